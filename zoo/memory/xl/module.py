"""Transformer-XL's memory: the last mem_len states of the stream, dropped as they leave."""

from __future__ import annotations

from zoo.memory.module import MemoryModule
from zoo.memory.xl.spec import XLSpec
from zoo.modules import builds


@builds(XLSpec)
class XLMemory(MemoryModule):
    """No parameters: the memory is the states themselves (MemoryModule.roll keeps the newest)."""
