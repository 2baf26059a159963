"""The plain stack: every layer at full length."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.kind import register
from zoo.shape.spec import ShapeSpec


@register
@dataclass
class StackSpec(ShapeSpec):
    """n_layer layers, one after another, each over the whole sequence."""

    kind: str = "stack"
