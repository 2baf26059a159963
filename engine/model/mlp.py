"""The dense feed-forward kind and the activations every feed-forward kind uses, by name."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.model.layers import Scale, linear
from runspec.config.kinds import PRENORM, FFNSpec, Regime
from runspec.config.schema import ModelConfig


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


class MLP(nn.Module):
    """The dense kind: down(act(up(x))), or with ``gated``: down(act(gate(x)) * up(x)) (SwiGLU,
    GEGLU...). ``rank``: d -> rank -> d_ff and d_ff -> rank -> d. Under nGPT (full) the up and
    gate outputs are scaled by s_u, s_v (init 1) times sqrt(d_model), as the reference does."""

    def __init__(self, m: ModelConfig, spec: FFNSpec, regime: Regime = PRENORM):
        super().__init__()
        d, f = m.d_model, spec.width(m)
        self.up = linear(d, f, m.bias, spec.rank)
        self.gate = linear(d, f, m.bias, spec.rank) if spec.gated else None
        self.act = make_activation(spec.activation, f, m.bias)
        self.down = linear(f, d, m.bias, spec.rank, residual_out=True)
        self.drop = nn.Dropout(m.dropout)
        full = regime.trains_scales
        self.s_u = Scale(f, 1.0, 1.0) if full else None
        self.s_v = Scale(f, 1.0, 1.0) if full and spec.gated else None
        self.uv_scale = math.sqrt(d)

    def forward(self, x: torch.Tensor, collect=None) -> torch.Tensor:
        u = self.up(x)
        if self.s_u is not None:
            u = u * (self.s_u() * self.uv_scale).to(u.dtype)
        if self.gate is not None:
            g = self.gate(x)
            if self.s_v is not None:
                g = g * (self.s_v() * self.uv_scale).to(g.dtype)
            h = self.act(g) * u
        else:
            h = self.act(u)
        return self.drop(self.down(h))
