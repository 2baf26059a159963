"""The feed-forward block and its activations, swappable by name."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ReLU2(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


class GeluSigmoid(nn.Module):
    """x * sigmoid(1.702 x), the sigmoid approximation of GELU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SoLU(nn.Module):
    """x * softmax(x) over the hidden units, then a LayerNorm (Elhage et al., 2022)."""

    def __init__(self, dim: int, bias: bool):
        super().__init__()
        self.ln = nn.LayerNorm(dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x * torch.softmax(x, dim=-1))


def make_activation(name: str, dim: int, bias: bool) -> nn.Module:
    simple = {
        "relu": nn.ReLU,
        "relu2": ReLU2,
        "gelu": nn.GELU,
        "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
        "gelu_sigmoid": GeluSigmoid,
        "silu": nn.SiLU,
    }
    if name == "solu":
        return SoLU(dim, bias)
    if name in simple:
        return simple[name]()
    raise ValueError(f"unknown activation '{name}'")


class MLP(nn.Module):
    """down(act(up(x))), or with ``gated``: down(act(gate(x)) * up(x)) (SwiGLU, GEGLU...)."""

    def __init__(self, d_model: int, d_ff: int, activation: str, gated: bool, bias: bool, dropout: float):
        super().__init__()
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.gate = nn.Linear(d_model, d_ff, bias=bias) if gated else None
        self.act = make_activation(activation, d_ff, bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.down.is_residual_out = True  # type: ignore[attr-defined]
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.gate(x)) * self.up(x) if self.gate is not None else self.act(self.up(x))
        return self.drop(self.down(h))
