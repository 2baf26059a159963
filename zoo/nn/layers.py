"""Linear layers the kinds share: a full or low-rank projection, and the nGPT normalization."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LowRank(nn.Module):
    """d_in -> rank -> d_out: two matrices whose product has rank <= ``rank`` (the bias, if any,
    on the second), for low-rank attention projections and feed-forward layers."""

    def __init__(self, d_in: int, d_out: int, rank: int, bias: bool):
        super().__init__()
        self.down = nn.Linear(d_in, rank, bias=False)
        self.up = nn.Linear(rank, d_out, bias=bias)

    @property
    def weight(self) -> torch.Tensor:  # the product, for code that reads a linear's weight
        return self.up.weight @ self.down.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


def linear(d_in: int, d_out: int, bias: bool, rank: int = 0, residual_out: bool = False) -> nn.Module:
    """A projection; ``residual_out`` marks the ones that write into the residual stream (their
    init is scaled with depth, nGPT normalizes them along the output dimension)."""
    layer = LowRank(d_in, d_out, rank, bias) if rank else nn.Linear(d_in, d_out, bias=bias)
    if residual_out:
        target = layer.up if rank else layer
        target.is_residual_out = True  # type: ignore[attr-defined]
    return layer


def unit(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """x / ||x|| along ``dim`` (nGPT's Norm), safe at zero."""
    return F.normalize(x, p=2.0, dim=dim, eps=1e-12)


class Scale(nn.Module):
    """nGPT's trainable scale: stored as p (initialised to ``scale``), used as
    |p| · init / scale, so the optimizer sees a parameter of the size of the others while the
    effective value starts at ``init``."""

    def __init__(self, size: int, init: float, scale: float, absolute: bool = False):
        super().__init__()
        self.init, self.scale, self.absolute = init, scale, absolute
        self.p = nn.Parameter(torch.full((size,), scale))
        self.param_roles = {"p": "scale"}

    def forward(self) -> torch.Tensor:
        s = self.p * (self.init / self.scale)
        return s.abs() if self.absolute else s
