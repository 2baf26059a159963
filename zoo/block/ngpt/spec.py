"""The ngpt block's spec."""

from __future__ import annotations

from dataclasses import dataclass, field

from zoo.block.spec import BlockSpec
from zoo.kind import choices, register


@register
@dataclass
class NGPTSpec(BlockSpec):
    """The normalized transformer (Loshchilov et al. 2024): every vector on the unit sphere,
    h <- Norm(h + α (Norm(f(h)) - h)), matrices renormalized after every optimizer step, q and k
    normalized per head and scaled by s_qk, logits scaled by s_z. ``variant = "simple"``: one
    scalar α per sub-layer, q/k normalized with a fixed scale, no s_uv (our proposal, not the
    paper's)."""

    kind: str = "ngpt"
    variant: str = field(default="full", metadata=choices("full", "simple"))  # full: per-dimension α and trained scales; simple: one α per sub-layer, fixed scales
    alpha_init: float = 0.05  # initial eigen learning rate α of each sub-layer

    def label(self) -> str:
        return "ngpt" if self.variant == "full" else "ngpt-simple"

    def check(self, m, need):
        need(not m.tie_embeddings, "[model] tie_embeddings",
             "nGPT keeps separate input and output embeddings (both normalized); set tie_embeddings = false")
        need(not m.qk_norm, "[model] qk_norm", "nGPT normalizes q and k itself; remove qk_norm")
        need(0 < self.alpha_init <= 1, "[model.block] alpha_init", f"found {self.alpha_init}, must be in (0, 1]")

    def params(self, m):
        return 2 * (m.d_model if self.variant == "full" else 1)
