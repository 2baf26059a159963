"""The plain stack: each block in turn, at full length."""

from __future__ import annotations

from zoo.modules import builds
from zoo.shape.module import ShapeModule
from zoo.shape.stack.spec import StackSpec


@builds(StackSpec)
class Stack(ShapeModule):
    def __init__(self, m, spec: StackSpec):
        super().__init__()

    def forward(self, blocks, x, cache, collect, after=None):
        for i, block in enumerate(blocks):
            x = block(x, cache[i] if cache is not None else None, collect)
            if after is not None:
                x = after(i, x)
        return x
