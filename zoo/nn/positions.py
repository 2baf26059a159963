"""Positional schemes: learned absolute, learned per layer (T12), rotary, Transformer-XL's
relative encoding, or none."""

from __future__ import annotations

import torch
from torch import nn


class Rotary(nn.Module):
    """Rotary position embedding on (B, H, T, D) tensors, half-split layout."""

    def __init__(self, head_dim: int, max_len: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._table(max_len)

    def _table(self, length: int) -> None:
        t = torch.arange(length, dtype=torch.float32, device=self.inv_freq.device)
        freqs = torch.outer(t, self.inv_freq)  # (T, D/2)
        self.register_buffer("cos", freqs.cos(), persistent=False)
        self.register_buffer("sin", freqs.sin(), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        T = x.size(-2)
        if offset + T > self.cos.size(0):  # past the context: a memory, or a pass over a whole split
            self._table(2 * (offset + T))
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


class RelativePositions(nn.Module):
    """Transformer-XL's relative encoding (Dai et al. 2019): the score of query i for key j adds
    q_i . W_R R_(i-j) + v . W_R R_(i-j) to the content term (q_i + u) . k_j, with R the sinusoid
    encoding of the distance, W_R a projection and u, v learned per head (per layer here: the
    paper's enwik8 runs untie them). ``encodings`` gives W_R R for distances 0 .. length - 1."""

    def __init__(self, d_model: int, n_head: int, head_dim: int):
        super().__init__()
        self.n_head, self.head_dim = n_head, head_dim
        self.proj = nn.Linear(d_model, n_head * head_dim, bias=False)  # W_R
        self.u = nn.Parameter(torch.zeros(n_head, head_dim))  # the content bias
        self.v = nn.Parameter(torch.zeros(n_head, head_dim))  # the position bias
        self.param_roles = {"u": "bias", "v": "bias"}
        inv_freq = 1.0 / (10000 ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def encodings(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        """(heads, length, head_dim): W_R R_d for d = 0 .. length - 1."""
        d = torch.arange(length, dtype=torch.float32, device=self.inv_freq.device)
        angles = torch.outer(d, self.inv_freq)
        r = torch.cat((angles.sin(), angles.cos()), dim=-1)[:, : self.proj.in_features]
        return self.proj(r.to(self.proj.weight.dtype)).view(length, self.n_head, self.head_dim).transpose(0, 1).to(dtype)
