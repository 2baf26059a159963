"""Causal self-attention: fused QKV, head size independent of width, optional QK-norm and
RoPE, PyTorch's scaled_dot_product_attention, and a KV cache for generation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.model.norms import make_norm
from engine.model.positions import Rotary


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_head: int, head_dim: int, bias: bool, dropout: float,
                 qk_norm: bool, norm: str, rotary: Rotary | None):
        super().__init__()
        self.n_head, self.head_dim = n_head, head_dim
        inner = n_head * head_dim
        self.qkv = nn.Linear(d_model, 3 * inner, bias=bias)
        self.proj = nn.Linear(inner, d_model, bias=bias)
        self.proj.is_residual_out = True  # type: ignore[attr-defined]
        self.q_norm = make_norm(norm, head_dim, bias) if qk_norm else None
        self.k_norm = make_norm(norm, head_dim, bias) if qk_norm else None
        self.rotary = rotary
        self.dropout = dropout
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: "LayerCache | None" = None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        offset = cache.length if cache is not None else 0
        if self.rotary is not None:
            q, k = self.rotary(q, offset), self.rotary(k, offset)
        if cache is not None:
            k, v = cache.append(k, v)
        if offset == 0 or T == 1:
            # empty cache: ordinary causal mask; one new token: it may see everything cached
            y = F.scaled_dot_product_attention(q, k, v, is_causal=(T > 1),
                                               dropout_p=self.dropout if self.training else 0.0)
        else:  # several new tokens after a cached prefix
            mask = torch.ones(T, offset + T, dtype=torch.bool, device=x.device).tril(diagonal=offset)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)
        return self.resid_drop(self.proj(y))


class LayerCache:
    """Keys and values seen so far by one layer (B, H, T, D)."""

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.size(2)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k, self.v = torch.cat((self.k, k), dim=2), torch.cat((self.v, v), dim=2)
        return self.k, self.v
