"""The prenorm block: x + attn(norm(x)), then x + ffn(norm(x)) (GPT-2, LLaMA)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from zoo.block.prenorm.spec import PreNormSpec
from zoo.memory.module import run_attention
from zoo.modules import builds
from zoo.nn.norms import make_norm

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig


@builds(PreNormSpec)
class PreNorm(nn.Module):
    def __init__(self, m: ModelConfig, spec: PreNormSpec, attn: nn.Module, mlp: nn.Module):
        super().__init__()
        self.ln1 = make_norm(m.norm, m.d_model, m.bias)
        self.attn = attn
        self.ln2 = make_norm(m.norm, m.d_model, m.bias)
        self.mlp = mlp
        self.residual_scale = m.residual_scale

    def forward(self, x: torch.Tensor, cache=None, collect=None) -> torch.Tensor:
        x = x + self.residual_scale * run_attention(self.attn, self.ln1(x), cache)
        return x + self.residual_scale * self.mlp(self.ln2(x), collect)
