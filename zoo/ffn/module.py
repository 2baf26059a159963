"""The activations every feed-forward kind uses, by name ([model.ffn] activation)."""

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
        # over the hidden units, in fp32 (a bf16 softmax over thousands of units loses the small ones)
        return self.ln(x * torch.softmax(x.float(), dim=-1).to(x.dtype))


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
