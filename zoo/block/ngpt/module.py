"""Block kinds: how a layer combines its attention and feed-forward with the residual stream.

prenorm: x + attn(norm(x)), then x + ffn(norm(x)) (GPT-2, LLaMA).
ngpt: the hidden state lives on the unit sphere, h <- Norm(h + α (Norm(f(h)) - h)) with
trainable α (|p| · init / scale, init 0.05, scale 1/sqrt(d)); no norm layers. The full variant
has a per-dimension α, the simple one a scalar.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from zoo.block.ngpt.spec import NGPTSpec
from zoo.memory.module import run_attention
from zoo.modules import builds
from zoo.nn.layers import Scale, unit

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig


@builds(NGPTSpec)
class NGPTBlock(nn.Module):
    def __init__(self, m: ModelConfig, spec: NGPTSpec, attn: nn.Module, mlp: nn.Module):
        super().__init__()
        size = m.d_model if spec.variant == "full" else 1
        scale = 1.0 / math.sqrt(m.d_model)
        self.attn, self.mlp = attn, mlp
        self.alpha_a = Scale(size, spec.alpha_init, scale, absolute=True)
        self.alpha_m = Scale(size, spec.alpha_init, scale, absolute=True)

    def forward(self, h: torch.Tensor, cache=None, collect=None) -> torch.Tensor:
        h_a = run_attention(self.attn, h, cache)
        h = unit(unit(h) + self.alpha_a().to(h.dtype) * (unit(h_a) - unit(h)))
        h_m = self.mlp(h, collect)
        return unit(h + self.alpha_m().to(h.dtype) * (unit(h_m) - h))


@torch.no_grad()
def ngpt_normalize(model: nn.Module) -> None:
    """nGPT's projection back onto the sphere, after every optimizer step and once at init:
    every matrix's vectors that live in (or are read from) a hidden space get unit norm. A
    linear layer's rows (output units over inputs) are normalized, except for layers that write
    into the residual stream, whose columns (the vectors they add to it) are; embeddings and
    the LM head by row; expert tensors likewise per expert."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and not getattr(module, "param_roles", {}).get("weight") == "router":
            w = module.weight
            w.copy_(unit(w, dim=0 if getattr(module, "is_residual_out", False) else 1))
        elif isinstance(module, nn.Embedding):
            module.weight.copy_(unit(module.weight, dim=1))
        elif hasattr(module, "residual_out_params"):  # mixture of experts: (E, out, in) tensors
            for name, role in module.param_roles.items():
                p = getattr(module, name, None)
                if p is not None and role == "expert":
                    p.copy_(unit(p, dim=1 if name in module.residual_out_params else 2))
