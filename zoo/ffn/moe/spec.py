"""The moe kind's spec."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.ffn.spec import FFNSpec
from zoo.kind import register


@register
@dataclass
class MoESpec(FFNSpec):
    """A mixture of experts: a router (fp32, no bias) sends each token to its top-k experts,
    weighted by the renormalized top-k of the softmax. Switch load balancing (α·E·Σ f_i P_i, f_i
    the share of routing slots, so a uniform router gives exactly 1) and the router z-loss
    are named losses; expert load is logged. capacity_factor 0 is dropless."""

    kind: str = "moe"
    experts: int = 4  # experts per layer
    top_k: int = 2  # experts each token is routed to
    balance_weight: float = 0.01  # weight of the Switch load-balancing loss
    z_weight: float = 0.001  # weight of the router z-loss
    capacity_factor: float = 0.0  # > 0: each expert takes at most ceil(tokens·k/E·factor); overflow passes by

    def check(self, m, need):
        super().check(m, need)
        w = "[model.ffn]"
        need(self.experts >= 1, f"{w} experts", f"found {self.experts}, must be >= 1")
        need(1 <= self.top_k <= self.experts, f"{w} top_k", f"found {self.top_k}, must be between 1 and experts "
                                                             f"({self.experts})")
        need(self.rank == 0, f"{w} rank", "low-rank experts are not supported; use kind = 'dense' with rank")
        for key in ("balance_weight", "z_weight", "capacity_factor"):
            need(getattr(self, key) >= 0, f"{w} {key}", f"found {getattr(self, key)}, must be >= 0")

    def params(self, m, regime):
        return m.d_model * self.experts + self.experts * self._mlp_params(m, regime)

    def matmul_params(self, m):
        return m.d_model * self.experts + self.top_k * super().matmul_params(m)

    def label(self) -> str:
        return f"moe{self.experts}x{self.top_k}" + (f"/r{self.rank}" if self.rank else "")

    @classmethod
    def bench_variants(cls, d_model, seq):
        return [("moe 4x2", {"kind": "moe", "experts": 4, "top_k": 2}),
                ("moe 8x2", {"kind": "moe", "experts": 8, "top_k": 2})]
