"""Normalization layers: LayerNorm (optionally without bias) and RMSNorm."""

from __future__ import annotations

from torch import nn

RMS_EPS = 1e-6  # growth scales it with d_model (engine/model/growth.py)


def make_norm(kind: str, dim: int, bias: bool) -> nn.Module:
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=1e-5, bias=bias)
    if kind == "rmsnorm":
        return nn.RMSNorm(dim, eps=RMS_EPS)  # RMSNorm has no bias by definition
    raise ValueError(f"unknown norm '{kind}'")
