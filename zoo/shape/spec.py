"""What every model shape shares (torch-free): how the layers are arranged along the sequence.
``stack`` runs every layer at full length (the plain model); ``hourglass`` shortens the sequence
in the middle layers. Each kind's own spec is in its folder (``zoo/shape/<kind>/spec.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig
    from zoo.kind import Need


@dataclass
class ShapeSpec:
    family: ClassVar[str] = "shape"
    kind: str = "stack"

    def check(self, m: ModelConfig, need: Need) -> None:
        pass

    def factors(self, m: ModelConfig) -> list[int]:
        """Each layer's shortening factor (1: full length), in order."""
        return [1] * m.n_layer

    def params(self, m: ModelConfig) -> int:
        """Parameters of the shape itself (pooling projections)."""
        return 0

    def label(self) -> str:
        return ""

    @classmethod
    def bench_variants(cls, d_model: int, seq: int) -> list[tuple[str, dict]]:
        """Rows of ``cockpit bench modules``' context table: (row name, its [model.shape] table)."""
        return []

    def grow_refusal(self) -> str:
        return ""
