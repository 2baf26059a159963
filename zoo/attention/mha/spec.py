"""The mha kind's spec."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.attention.spec import AttentionSpec
from zoo.kind import register


@register
@dataclass
class MHASpec(AttentionSpec):
    """Multi-head attention (the LLaMA/GPT baseline): fused QKV, SDPA."""

    kind: str = "mha"
    fused_qkv: bool = True  # one matmul for q, k and v (False: three; the bench compares them)

    def lora_targets(self) -> list[str]:
        return ["qkv", "proj"] if self.fused_qkv else ["q", "k", "v", "proj"]

    def grow_refusal(self) -> str:
        return "" if self.rank == 0 else super().grow_refusal()

    @classmethod
    def bench_variants(cls, d_model, seq):
        window = max(1, seq // 4)
        return [("mha", {"kind": "mha"}),
                (f"mha sliding {window}", {"kind": "mha", "pattern": "sliding", "window": window}),
                ("mha low-rank d/4", {"kind": "mha", "rank": max(1, d_model // 4)})]

    def params(self, m, regime):
        ngpt = regime.trains_scales
        h, hd = self.heads(m)
        inner = h * hd
        qkv = self._proj(m.d_model, 3 * inner, m.bias) if self.fused_qkv else 3 * self._proj(m.d_model, inner, m.bias)
        return qkv + self._proj(inner, m.d_model, m.bias) + self._qk_norm_params(m, hd) + (inner if ngpt else 0)

    def matmul_params(self, m):
        h, hd = self.heads(m)
        inner = h * hd
        qkv = self._weights(m.d_model, 3 * inner) if self.fused_qkv else 3 * self._weights(m.d_model, inner)
        return qkv + self._weights(inner, m.d_model)

    def cache_per_token(self, m):
        h, hd = self.heads(m)
        return 2 * h * hd

    def score_flops(self, m, context):
        h, hd = self.heads(m)
        return 2.0 * context * h * (hd + hd)
