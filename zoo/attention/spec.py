"""Keys, checks and counts every attention kind shares (torch-free); each kind's own spec is
in its folder (``zoo/attention/<kind>/spec.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from zoo.kind import ModuleKind, Need, choices

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig
    from zoo.kind import Regime

PATTERNS = ("full", "sliding", "strided", "dilated")


@dataclass
class AttentionSpec(ModuleKind):
    """Keys every attention kind has. Head count and size are the model's (``[model] n_head``,
    ``head_dim``): each kind reads them as its baseline geometry."""

    family: ClassVar[str] = "attention"
    kind: str = "mha"
    # sparse patterns, for any kind (Child et al. 2019): which earlier keys a query may see
    pattern: str = field(default="full", metadata=choices(*PATTERNS))  # which earlier keys a query may see (any kind)
    window: int = 0  # sliding/strided: keys within this distance (self included); dilated: how many keys
    stride: int = 0  # strided: also every stride-th key further back; dilated: the step between keys
    rank: int = 0  # low-rank q/k/v and output projections (d -> rank -> out); 0: full rank

    def check(self, m: ModelConfig, need: Need) -> None:
        w = "[model.attention]"
        need(self.rank >= 0, f"{w} rank", f"found {self.rank}, must be >= 0 (0 = full rank)")
        need(self.window >= 0 and self.stride >= 0, f"{w} window", "window and stride must be >= 0")
        if self.pattern == "full":
            need(self.window == 0 and self.stride == 0, f"{w} pattern",
                 "window/stride set but pattern = 'full'; choose pattern = 'sliding', 'strided' or 'dilated'")
        elif self.pattern == "sliding":
            need(self.window >= 1 and self.stride == 0, f"{w} window", "sliding needs window >= 1 (and no stride)")
        elif self.pattern == "strided":
            need(self.window >= 1 and self.stride >= 1, f"{w} stride", "strided needs window >= 1 and stride >= 1")
        elif self.pattern == "dilated":
            need(self.window >= 1 and self.stride >= 2, f"{w} stride", "dilated needs window >= 1 and stride >= 2")

    def heads(self, m: ModelConfig) -> tuple[int, int]:
        """(heads, head size) of the baseline geometry."""
        return m.n_head, m.head_dim or m.d_model // m.n_head

    def _weights(self, d_in: int, d_out: int) -> int:
        return d_in * self.rank + self.rank * d_out if self.rank else d_in * d_out

    def _proj(self, d_in: int, d_out: int, bias: bool) -> int:
        return self._weights(d_in, d_out) + (d_out if bias else 0)

    def _qk_norm_params(self, m: ModelConfig, dim: int) -> int:
        if not m.qk_norm:
            return 0
        return 2 * dim * (2 if m.norm == "layernorm" and m.bias else 1)

    # what every kind answers
    def params(self, m: ModelConfig, regime: Regime) -> int:
        """With nGPT's trainable s_qk under its full variant."""
        raise NotImplementedError

    def matmul_params(self, m: ModelConfig) -> int:
        """Weights a token is multiplied by (no biases, gains or scales)."""
        raise NotImplementedError

    def cache_per_token(self, m: ModelConfig) -> int:
        """Numbers kept in the KV cache per token and layer."""
        raise NotImplementedError

    def score_flops(self, m: ModelConfig, context: int) -> float:
        """Forward FLOPs per token of the attention scores and their weighted sum (the part
        that is not a weight matmul), at full context, as PaLM counts it (no causal halving)."""
        raise NotImplementedError

    def label(self) -> str:
        return self.kind + (f"/{self.pattern}" if self.pattern != "full" else "") + (f"/r{self.rank}" if self.rank else "")

    def grow_refusal(self) -> str:
        """Why a model with this kind cannot grow; '' when it can (function-preserving growth)."""
        return f"growth needs full-rank attention kind 'mha' (found '{self.label()}')"
