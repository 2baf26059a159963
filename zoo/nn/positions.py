"""Positional schemes: learned absolute, learned per layer (T12), rotary, or none."""

from __future__ import annotations

import torch
from torch import nn


class Rotary(nn.Module):
    """Rotary position embedding on (B, H, T, D) tensors, half-split layout."""

    def __init__(self, head_dim: int, max_len: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        t = torch.arange(max_len, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)  # (T, D/2)
        self.register_buffer("cos", freqs.cos(), persistent=False)
        self.register_buffer("sin", freqs.sin(), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        T = x.size(-2)
        cos = self.cos[offset: offset + T].to(x.dtype)
        sin = self.sin[offset: offset + T].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class LearnedPositions(nn.Module):
    """One learned table (``n_tables = 1``, GPT-2) or one per layer (T12: position added at
    every layer's input)."""

    def __init__(self, n_tables: int, max_len: int, d_model: int):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(max_len, d_model) for _ in range(n_tables))

    def forward(self, layer: int, T: int, offset: int, device: torch.device) -> torch.Tensor:
        pos = torch.arange(offset, offset + T, device=device)
        return self.tables[layer](pos)
