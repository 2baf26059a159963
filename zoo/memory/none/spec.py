"""No memory: every context window stands alone (the plain model)."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.kind import register
from zoo.memory.spec import MemorySpec


@register
@dataclass
class NoMemorySpec(MemorySpec):
    """Each window is attended to on its own."""

    kind: str = "none"
