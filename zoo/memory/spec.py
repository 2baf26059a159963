"""What every memory kind shares (torch-free): a memory carries what earlier segments of a
stream left in each layer, so attention reaches past one context window (Transformer-XL's
segment recurrence, the compressive transformer). Each kind's own spec is in its folder
(``zoo/memory/<kind>/spec.py``), its module beside it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from zoo.kind import ModelKind, Need

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig

RELATIVE_POSITIONS = ("rope", "xl_relative", "none")


@dataclass
class MemorySpec(ModelKind):
    family: ClassVar[str] = "memory"
    kind: str = "none"

    @property
    def active(self) -> bool:
        """Whether the model carries anything across segments (its training reads streams)."""
        return False

    def slots(self, evaluating: bool = False) -> int:
        """States a layer attends to beyond its segment (the compressed ones included)."""
        return 0

    def _check_memory(self, m: ModelConfig, need: Need) -> None:
        w = f"[model.memory] kind = '{self.kind}'"
        need(m.pos in RELATIVE_POSITIONS, "[model] pos",
             f"{w} needs relative positions (a state from an earlier segment has no place in a learned table): "
             f"use pos = 'rope' or 'xl_relative' (found '{m.pos}')")
        need(m.block.kind in ("prenorm", "ngpt"), f"{w}", f"needs block kind 'prenorm' or 'ngpt' (found '{m.block.kind}')")
        need(m.shape.kind == "stack", f"{w}", f"and [model.shape] kind = '{m.shape.kind}' do not compose "
                                              f"(a memory of shortened states); use one of them")
