"""The diff kind's spec."""

from __future__ import annotations

from dataclasses import dataclass, field

from zoo.attention.spec import AttentionSpec
from zoo.kind import choices, register


@register
@dataclass
class DiffSpec(AttentionSpec):
    """Differential attention (Ye et al. 2024): (softmax(Q1K1) - λ softmax(Q2K2)) V per head, a
    per-head RMSNorm scaled by (1 - λ_init). With ``[model] n_head`` = H and head size d, it
    has H/2 heads, each with two query/key maps of size d and a value of size 2d: the same
    parameters as the H-head baseline."""

    kind: str = "diff"
    lambda_schedule: str = field(default="depth", metadata=choices("depth", "constant"))  # depth: λ_init = 0.8 - 0.6 exp(-0.3 layer); constant: lambda_init
    lambda_init: float = 0.8  # used with lambda_schedule = "constant"; "depth": 0.8 - 0.6 exp(-0.3 layer)
    subln: bool = True  # the per-head RMSNorm (2d) and its (1 - λ_init) factor
    version: int = 1  # 2: λ = sigmoid(W_λ x) per token and head, no sub-norm (the repository's DIFF V2)

    def check(self, m, need):
        super().check(m, need)
        w = "[model.attention]"
        need(m.n_head % 2 == 0, "[model] n_head", f"{self.kind} pairs heads: n_head must be even, found {m.n_head}")
        need(self.version in (1, 2), f"{w} version", f"found {self.version}, allowed: 1, 2")
        need(0.0 <= self.lambda_init < 1.0, f"{w} lambda_init", f"found {self.lambda_init}, must be in [0, 1)")

    def params(self, m, regime):
        ngpt = regime.trains_scales
        h, hd = self.heads(m)
        inner = h * hd  # q: 2 maps x H/2 heads x d; k the same; v: H/2 heads x 2d
        n = 3 * self._proj(m.d_model, inner, m.bias) + self._proj(inner, m.d_model, m.bias)
        if self.version == 1:
            n += 4 * hd  # λ_q1, λ_k1, λ_q2, λ_k2
            n += 2 * hd if self.subln else 0  # RMSNorm over 2d, with a gain
        else:
            n += m.d_model * (h // 2) + (h // 2 if m.bias else 0)  # W_λ
        return n + self._qk_norm_params(m, hd) + (inner if ngpt else 0)

    def matmul_params(self, m):
        h, hd = self.heads(m)
        inner = h * hd
        n = 3 * self._weights(m.d_model, inner) + self._weights(inner, m.d_model)
        return n + (m.d_model * (h // 2) if self.version == 2 else 0)

    def cache_per_token(self, m):
        h, hd = self.heads(m)
        return 2 * h * hd

    def score_flops(self, m, context):
        h, hd = self.heads(m)
        return 2.0 * context * (h // 2) * (2 * hd + 2 * hd)  # two score maps of d, one weighted sum of 2d
