"""What every model shape shares (torch-free): how the layers are arranged along the sequence.
``stack`` runs every layer at full length (the plain model); ``hourglass`` shortens the sequence
in the middle layers. Each kind's own spec is in its folder (``zoo/shape/<kind>/spec.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from zoo.kind import ModelKind

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig


@dataclass
class ShapeSpec(ModelKind):
    family: ClassVar[str] = "shape"
    kind: str = "stack"

    def factors(self, m: ModelConfig) -> list[int]:
        """Each layer's shortening factor (1: full length), in order."""
        return [1] * m.n_layer

    def grow_refusal(self) -> str:
        return ""
