"""Multi-head attention, the baseline kind: fused (or separate) q/k/v projections, optional
QK-norm and RoPE, scaled_dot_product_attention, a KV cache of keys and values."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from zoo.attention.mha.spec import MHASpec
from zoo.attention.module import AttentionBase, Cache, rotary_for
from zoo.kind import PRENORM, Regime
from zoo.modules import builds
from zoo.nn.layers import linear

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig


@builds(MHASpec)
class MHA(AttentionBase):
    def __init__(self, m: ModelConfig, spec: MHASpec, layer: int, regime: Regime = PRENORM):
        super().__init__(m, spec, layer, regime)
        inner = self.n_head * self.head_dim
        if spec.fused_qkv:
            self.qkv = linear(m.d_model, 3 * inner, m.bias, spec.rank)
        else:
            self.q = linear(m.d_model, inner, m.bias, spec.rank)
            self.k = linear(m.d_model, inner, m.bias, spec.rank)
            self.v = linear(m.d_model, inner, m.bias, spec.rank)
        self.proj = linear(inner, m.d_model, m.bias, spec.rank, residual_out=True)
        self._qk_norms(m, self.head_dim)
        self._ngpt_scale(inner)
        self.rotary = rotary_for(m, self.head_dim)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        H, D = self.n_head, self.head_dim
        if self.spec.fused_qkv:
            q, k, v = self.qkv(x).view(B, T, 3, H, D).permute(2, 0, 3, 1, 4)
        else:
            q, k, v = (f(x).view(B, T, H, D).transpose(1, 2) for f in (self.q, self.k, self.v))
        offset = cache.length if cache is not None else 0
        q, k = self.qk_pre(q, k)
        if self.rotary is not None:
            q, k = self.rotary(q, offset), self.rotary(k, offset)
        q, k = self.qk_post(q, k)
        if cache is not None:
            k, v = cache.append(k=k, v=v)
        y = self.attend(q, k, v, offset, self.softmax_scale(D))
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, H * D)))
