"""What every memory kind's module shares: the state a layer carries from one segment of a
stream to the next, in its two uses.

- :class:`SegmentMemory` (training, and evaluation over a split): the layer's attention reads
  [earlier states ; this segment] as one causal sequence and keeps the outputs of this segment;
  then this segment's states join the memory, without gradient (XL's stop-gradient).
- :class:`DecodeMemory` (completion, serving): the same memory, with a KV cache of the segment
  being generated, prefilled from the memory's states when a segment begins; when the segment is
  full its states roll into the memory. Token by token this computes what the segment pass does.

The states kept are each layer's attention inputs (after its norm). A block hands its attention
and input to ``run_attention``, which lets the memory do the attending when there is one.
"""

from __future__ import annotations

import torch
from torch import nn


def run_attention(attn: nn.Module, x: torch.Tensor, cache) -> torch.Tensor:
    """attn(x, cache), or the memory's attending when ``cache`` is a layer's memory."""
    if isinstance(cache, LayerState):
        return cache.attend(attn, x)
    return attn(x, cache)


class MemoryModule(nn.Module):
    """A layer's memory kind: how states roll into the memory (and what leaves it becomes)."""

    def __init__(self, m, spec, layer: int):
        super().__init__()
        self.spec, self.layer = spec, layer

    def roll(self, state: "LayerState", x: torch.Tensor, attn: nn.Module | None) -> None:
        """``x`` (detached) joins the memory; what no longer fits leaves it (XL: dropped)."""
        keep = state.mem_len
        both = torch.cat((state.mem, x), dim=1)
        state.mem = both[:, max(0, both.size(1) - keep):]  # the newest keep (none when keep = 0)

    def context(self, state: "LayerState") -> torch.Tensor:
        """The earlier states the segment attends to, oldest first."""
        return state.mem


class LayerState:
    """One layer's memory over a batch of streams: ``mem`` (B, <= mem_len, d), ``cmem`` (B, <=
    cmem_len, d) for the compressive kind; ``losses`` collects named losses of a training
    forward (the compressive kind's reconstruction loss)."""

    def __init__(self, module: MemoryModule, mem_len: int, cmem_len: int = 0, train: bool = False):
        self.module, self.mem_len, self.cmem_len, self.train = module, mem_len, cmem_len, train
        self.mem = self.cmem = None  # (B, 0, d) once the batch is seen
        self.losses: dict[str, torch.Tensor] = {}

    def _start(self, x: torch.Tensor) -> None:
        if self.mem is None or self.mem.size(0) != x.size(0):
            self.mem = x.new_zeros(x.size(0), 0, x.size(2))
            self.cmem = x.new_zeros(x.size(0), 0, x.size(2))

    def attend(self, attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"mem": self.mem, "cmem": self.cmem}

    def load_state_dict(self, d: dict) -> None:
        self.mem, self.cmem = d.get("mem"), d.get("cmem")


class SegmentMemory(LayerState):
    def attend(self, attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        self._start(x)
        context = self.module.context(self)
        n = context.size(1)
        y = attn(torch.cat((context.to(x.dtype), x), dim=1) if n else x)
        out = y[:, n:]
        self.module.roll(self, x.detach(), attn if self.train else None)
        return out


class DecodeMemory(LayerState):
    """The memory while decoding: ``segment`` is the model's context (block_size)."""

    def __init__(self, module: MemoryModule, mem_len: int, cmem_len: int, segment: int):
        super().__init__(module, mem_len, cmem_len)
        self.segment = segment
        self.kv = None  # the attention's cache of [memory ; segment so far]
        self.seg: torch.Tensor | None = None  # this segment's states so far

    @property
    def length(self) -> int:
        """Tokens in the KV cache (the memory's and this segment's)."""
        return self.kv.length if self.kv is not None else 0

    def numbers_per_token(self) -> int:
        return self.kv.numbers_per_token() if self.kv is not None else 0

    @property
    def room(self) -> int:
        """Tokens the current segment can still take."""
        return self.segment - (self.seg.size(1) if self.seg is not None else 0)

    def attend(self, attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        self._start(x)
        if self.kv is None:  # a segment begins: its cache starts with the memory's keys and values
            self.kv = attn.new_cache()
            self.seg = x[:, :0]
            context = self.module.context(self)
            if context.size(1):
                attn(context.to(x.dtype), self.kv)  # (the outputs for the memory are not needed)
        y = attn(x, self.kv)
        self.seg = torch.cat((self.seg, x), dim=1)
        if self.seg.size(1) >= self.segment:
            self.module.roll(self, self.seg, None)
            self.kv = self.seg = None
        return y
