"""Keys, checks and counts every feed-forward kind shares (torch-free); each kind's own spec
is in its folder (``zoo/ffn/<kind>/spec.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from zoo.kind import ModuleKind, choices

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig
    from zoo.kind import Regime

ACTIVATIONS = ("relu", "relu2", "gelu", "gelu_tanh", "gelu_sigmoid", "silu", "solu")


@dataclass
class FFNSpec(ModuleKind):
    family: ClassVar[str] = "ffn"
    kind: str = "dense"
    activation: str = field(default="gelu", metadata=choices(*ACTIVATIONS))  # the nonlinearity (gated + silu = SwiGLU, gated + gelu = GEGLU)
    gated: bool = False  # SwiGLU = gated + silu, GEGLU = gated + gelu
    d_ff: int = 0  # hidden width (per expert for moe); 0: mlp_ratio x d_model
    mlp_ratio: float = 4.0  # d_ff = mlp_ratio x d_model when d_ff = 0
    rank: int = 0  # low-rank: d -> rank -> d_ff and d_ff -> rank -> d (a compression in the middle); 0: off

    def width(self, m: ModelConfig) -> int:
        return self.d_ff or int(round(self.mlp_ratio * m.d_model))

    def check(self, m, need):
        w = "[model.ffn]"
        need(self.d_ff >= 0, f"{w} d_ff", f"found {self.d_ff}, must be >= 0 (0 = mlp_ratio * d_model)")
        need(self.mlp_ratio > 0, f"{w} mlp_ratio", f"found {self.mlp_ratio}, must be > 0")
        need(self.rank >= 0, f"{w} rank", f"found {self.rank}, must be >= 0 (0 = full rank)")

    def _mlp_params(self, m: ModelConfig, regime: Regime) -> int:
        d, f, b, r = m.d_model, self.width(m), m.bias, self.rank
        proj = (lambda a, z: a * r + r * z + (z if b else 0)) if r else (lambda a, z: a * z + (z if b else 0))
        n = proj(d, f) * (2 if self.gated else 1) + proj(f, d)
        if self.activation == "solu":
            n += f * (2 if b else 1)
        if regime.trains_scales:
            n += f * (2 if self.gated else 1)  # s_u, s_v
        return n

    def params(self, m, regime: Regime) -> int:
        return self._mlp_params(m, regime)

    def matmul_params(self, m: ModelConfig) -> int:
        """Weights a token is multiplied by (active ones, for a mixture of experts)."""
        d, f, r = m.d_model, self.width(m), self.rank
        one = (d * r + r * f) if r else d * f
        down = (f * r + r * d) if r else f * d
        return one * (2 if self.gated else 1) + down

    def label(self) -> str:
        return self.kind + (f"/r{self.rank}" if self.rank else "")

    def grow_refusal(self) -> str:
        """Why a model with this kind cannot grow; '' when it can."""
        return "growth needs a full-rank dense ffn without SoLU (its layernorm over the hidden units would change)"
