"""What every shape's module shares: it runs the model's blocks over the sequence. The blocks
belong to the model (``GPT.blocks``, one flat list: names, FSDP units, growth and LoRA see
them as always); a shape only decides the order and the length each one runs at."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

After = Callable[[int, torch.Tensor], torch.Tensor]  # after block i: what the model adds (T12 positions, layer taps)


class Caches(list):
    """The per-block caches of one decoding (attention KV caches or a layer's memory), and the
    shape's own decoding state (an hourglass's partial groups)."""

    shape_state = None


class ShapeModule(nn.Module):
    def new_state(self):
        """The shape's own decoding state (None: it needs none)."""
        return None

    def forward(self, blocks: nn.ModuleList, x: torch.Tensor, cache: Caches | list | None, collect,
                after: After | None = None) -> torch.Tensor:
        raise NotImplementedError
