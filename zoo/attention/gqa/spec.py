"""The gqa kind's spec: grouped-query attention (Ainslie et al. 2023), multi-query as its limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from zoo.attention.spec import AttentionSpec
from zoo.kind import register

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig
    from zoo.kind import Regime


@register
@dataclass
class GQASpec(AttentionSpec):
    """Grouped-query attention (Ainslie et al. 2023; LLaMA-2 70B, LLaMA-3, Mistral): the
    ``[model] n_head`` query heads share ``kv_heads`` key/value heads, each serving a group of
    n_head / kv_heads queries, so the KV cache shrinks by that factor. kv_heads = n_head is MHA,
    kv_heads = 1 multi-query attention (Shazeer 2019)."""

    kind: str = "gqa"
    kv_heads: int = 0  # key/value heads; 0: n_head / 4 (at least 1), LLaMA-3 8B's ratio

    def groups(self, m: ModelConfig) -> int:
        """Key/value heads as built."""
        return self.kv_heads or max(1, m.n_head // 4)

    def check(self, m, need):
        super().check(m, need)
        w = "[model.attention]"
        need(self.kv_heads >= 0, f"{w} kv_heads", f"found {self.kv_heads}, must be >= 0 (0 = n_head / 4)")
        g = self.groups(m)
        need(g <= m.n_head and m.n_head % g == 0, f"{w} kv_heads",
             f"found {g}, must divide [model] n_head ({m.n_head}): each key/value head serves a whole group")

    def lora_targets(self) -> list[str]:
        return ["q", "k", "v", "proj"]

    @classmethod
    def bench_variants(cls, d_model, seq):
        return [("gqa kv_heads=2", {"kind": "gqa", "kv_heads": 2}), ("gqa multi-query", {"kind": "gqa", "kv_heads": 1})]

    def params(self, m: ModelConfig, regime: Regime) -> int:
        h, hd = self.heads(m)
        inner, kv = h * hd, self.groups(m) * hd
        n = self._proj(m.d_model, inner, m.bias) + 2 * self._proj(m.d_model, kv, m.bias)
        n += self._proj(inner, m.d_model, m.bias) + self._qk_norm_params(m, hd)
        return n + (inner if regime.trains_scales else 0)

    def matmul_params(self, m):
        h, hd = self.heads(m)
        inner, kv = h * hd, self.groups(m) * hd
        return self._weights(m.d_model, inner) + 2 * self._weights(m.d_model, kv) + self._weights(inner, m.d_model)

    def cache_per_token(self, m):
        _, hd = self.heads(m)
        return 2 * self.groups(m) * hd

    def score_flops(self, m, context):
        h, hd = self.heads(m)
        return 2.0 * context * h * (hd + hd)  # every query head still scores and sums over its group's keys
