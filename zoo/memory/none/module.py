"""No memory: the model builds no memory modules (this class is what the registry names)."""

from __future__ import annotations

from zoo.memory.module import MemoryModule
from zoo.memory.none.spec import NoMemorySpec
from zoo.modules import builds


@builds(NoMemorySpec)
class NoMemory(MemoryModule):
    """Never built: a model without a memory has ``memory = None``."""
