"""Normalization layers: LayerNorm (optionally without bias) and RMSNorm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RMS_EPS = 1e-6  # growth scales it with d_model (engine/model/growth.py)


class RMSNorm(nn.RMSNorm):
    """torch's RMSNorm, with its gain cast to the input's dtype: under bf16 autocast a bf16 input
    (QK-norm reads a bf16 projection) and the fp32 gain missed the fused kernel (torch warned,
    and took the slow path)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) if self.weight is not None else None
        return F.rms_norm(x, self.normalized_shape, w, self.eps)


def make_norm(kind: str, dim: int, bias: bool) -> nn.Module:
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=1e-5, bias=bias)
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=RMS_EPS)  # RMSNorm has no bias by definition
    raise ValueError(f"unknown norm '{kind}'")
