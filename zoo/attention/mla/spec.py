"""The mla kind's spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zoo.kind import choices, register

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig
from zoo.attention.spec import AttentionSpec


@register
@dataclass
class MLASpec(AttentionSpec):
    """Multi-head latent attention (DeepSeek-V2/V3): keys and values from a shared latent
    c_KV = W_DKV h (cached, normed), a decoupled RoPE key k_R shared by all heads (cached).
    ``absorb``: fold W_UK into the query and attend in the latent space (same result)."""

    kind: str = "mla"

    @classmethod
    def bench_variants(cls, d_model, seq):
        return [("mla", {"kind": "mla"}), ("mla absorbed", {"kind": "mla", "absorb": True}),
                ("mla map=dint", {"kind": "mla", "map": "dint"})]

    latent_dim: int = 0  # d_c; 0: 4 x head size (DeepSeek-V2's ratio)
    rope_head_dim: int = 0  # d_h^R; 0: half the head size with pos = "rope", none otherwise
    q_latent_dim: int = 0  # d_c' of the optional query compression; 0: no compression
    absorb: bool = False  # fold W_UK into the query and attend in the latent space (same outputs)
    # the attention map over the latent keys: plain softmax, or differential (pairs of heads, as diff/dint)
    map: str = field(default="softmax", metadata=choices("softmax", "diff", "dint"))  # the attention map over the latent keys: softmax, or differential as diff/dint
    lambda_schedule: str = field(default="depth", metadata=choices("depth", "constant"))  # map = diff/dint: as diff's
    lambda_init: float = 0.8  # map = diff/dint: as diff's
    subln: bool = True  # map = diff/dint: as diff's

    def dims(self, m: ModelConfig) -> tuple[int, int, int, int]:
        """(heads, head size, latent, rope part) as built."""
        h, hd = self.heads(m)
        rope = self.rope_head_dim or (hd // 2 if m.pos == "rope" else 0)
        return h, hd, self.latent_dim or 4 * hd, rope

    def check(self, m, need):
        super().check(m, need)
        w = "[model.attention]"
        need(self.rank == 0, f"{w} rank", "MLA's projections are low-rank already (latent_dim); rank is for "
                                          "mha, diff and dint")
        for key in ("latent_dim", "rope_head_dim", "q_latent_dim"):
            need(getattr(self, key) >= 0, f"{w} {key}", f"found {getattr(self, key)}, must be >= 0")
        need(not m.qk_norm, "[model] qk_norm", "MLA normalizes its latent (c_KV) instead; a per-head norm of k "
                                              "would mix the cached, rotated k_R with k_C; remove qk_norm")
        need(m.pos == "rope" or self.rope_head_dim == 0, f"{w} rope_head_dim",
             f"the decoupled RoPE key needs [model] pos = 'rope' (found '{m.pos}')")
        _, _, _, rope = self.dims(m)
        need(rope % 2 == 0, f"{w} rope_head_dim", f"RoPE needs an even size, found {rope}")
        if self.map != "softmax":
            need(m.n_head % 2 == 0, "[model] n_head", f"map = '{self.map}' pairs heads: n_head must be even, "
                                                      f"found {m.n_head}")
            need(not self.absorb, f"{w} absorb", "the absorbed path is for map = 'softmax'; a differential map "
                                                 "shares each pair's values, so use absorb = false")
            need(0.0 <= self.lambda_init < 1.0, f"{w} lambda_init", f"found {self.lambda_init}, must be in [0, 1)")

    def params(self, m, regime):
        ngpt = regime.trains_scales
        h, hd, dc, dr = self.dims(m)
        b = m.bias
        n = m.d_model * (dc + dr) + (dc + dr if b else 0)  # W_DKV and W_KR, fused
        n += dc * (1 if m.norm == "rmsnorm" or not b else 2)  # the norm on c_KV
        n += dc * h * (hd + hd)  # W_UK, W_UV (no bias, as the reference)
        if self.q_latent_dim:
            dq = self.q_latent_dim
            n += m.d_model * dq + (dq if b else 0) + dq * (1 if m.norm == "rmsnorm" or not b else 2)
            n += dq * h * (hd + dr)
        else:
            n += m.d_model * h * (hd + dr) + (h * (hd + dr) if b else 0)
        n += h * hd * m.d_model + (m.d_model if b else 0)
        if self.map != "softmax":
            n += 4 * (hd + dr) + (2 * hd if self.subln else 0)  # λ vectors over the q/k size, the 2d sub-norm
        return n + self._qk_norm_params(m, hd + dr) + (h * (hd + dr) if ngpt else 0)

    def matmul_params(self, m):
        h, hd, dc, dr = self.dims(m)
        q = (m.d_model * self.q_latent_dim + self.q_latent_dim * h * (hd + dr) if self.q_latent_dim
             else m.d_model * h * (hd + dr))
        return m.d_model * (dc + dr) + dc * h * 2 * hd + q + h * hd * m.d_model

    def cache_per_token(self, m):
        _, _, dc, dr = self.dims(m)
        return dc + dr

    def score_flops(self, m, context):
        h, hd, _, dr = self.dims(m)
        if self.map != "softmax":  # per pair: two score maps of d + d_R, one weighted sum of 2d, applied twice
            return 2.0 * context * (h // 2) * (2 * (hd + dr) + 2 * 2 * hd)
        return 2.0 * context * h * ((hd + dr) + hd)

    def label(self) -> str:
        base = super().label()
        return base if self.map == "softmax" else base.replace("mla", f"mla/{self.map}", 1)
