"""Transformer-XL's segment recurrence (Dai et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.kind import register
from zoo.memory.spec import MemorySpec


@register
@dataclass
class XLSpec(MemorySpec):
    """Each layer attends to its own inputs from the last ``mem_len`` positions of the stream
    (earlier segments, kept without gradient) as well as to the current segment. Training reads
    each batch row as a contiguous stream; evaluation carries the memory over the whole split."""

    kind: str = "xl"
    mem_len: int = 128  # states kept per layer from earlier segments (0: none, the plain model)
    eval_mem_len: int = 0  # the memory when evaluating over a split (the paper evaluates with more); 0: mem_len

    @property
    def active(self) -> bool:
        return True

    def slots(self, evaluating: bool = False) -> int:
        return (self.eval_mem_len or self.mem_len) if evaluating else self.mem_len

    def check(self, m, need):
        w = "[model.memory]"
        need(self.mem_len >= 0, f"{w} mem_len", f"found {self.mem_len}, must be >= 0")
        need(self.eval_mem_len >= 0, f"{w} eval_mem_len", f"found {self.eval_mem_len}, must be >= 0 (0: mem_len)")
        self._check_memory(m, need)

    def label(self) -> str:
        return f"xl{self.mem_len}"

    @classmethod
    def bench_variants(cls, d_model, seq):
        return [(f"xl mem {seq}", {"kind": "xl", "mem_len": seq})]
