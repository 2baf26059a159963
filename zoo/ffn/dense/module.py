"""The dense feed-forward kind."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from zoo.ffn.dense.spec import DenseSpec
from zoo.ffn.module import make_activation
from zoo.ffn.spec import FFNSpec
from zoo.kind import PRENORM, Regime
from zoo.modules import builds
from zoo.nn.layers import Scale, linear

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig


@builds(DenseSpec)
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
