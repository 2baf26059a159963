"""Grouped-query attention: query heads in groups, each group reading one key/value head. The
cache keeps the kv_heads keys and values (the point of the kind); they are repeated to the query
heads only for the product, after the cache, so decoding stores kv_heads / n_head of MHA's cache.
nGPT's normalization and s_qk are per head and per position, so they are applied after that
repeat: the same function as applying them before, with s_qk defined per query head."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from zoo.attention.gqa.spec import GQASpec
from zoo.attention.module import AttentionBase, Cache, rotary_for
from zoo.kind import PRENORM, Regime
from zoo.modules import builds
from zoo.nn.layers import linear

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig


@builds(GQASpec)
class GQA(AttentionBase):
    def __init__(self, m: ModelConfig, spec: GQASpec, layer: int, regime: Regime = PRENORM):
        super().__init__(m, spec, layer, regime)
        self.kv_heads = spec.groups(m)
        inner, kv = self.n_head * self.head_dim, self.kv_heads * self.head_dim
        self.q = linear(m.d_model, inner, m.bias, spec.rank)
        self.k = linear(m.d_model, kv, m.bias, spec.rank)
        self.v = linear(m.d_model, kv, m.bias, spec.rank)
        self.proj = linear(inner, m.d_model, m.bias, spec.rank, residual_out=True)
        self._qk_norms(m, self.head_dim)
        self._ngpt_scale(inner)
        self.rotary = rotary_for(m, self.head_dim)

    def _repeat(self, t: torch.Tensor) -> torch.Tensor:
        """(B, G, T, D) -> (B, H, T, D): query head i reads key/value head i // (H / G)."""
        B, G, T, D = t.shape
        return t[:, :, None].expand(B, G, self.n_head // G, T, D).reshape(B, self.n_head, T, D)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        H, G, D = self.n_head, self.kv_heads, self.head_dim
        q = self.q(x).view(B, T, H, D).transpose(1, 2)
        k = self.k(x).view(B, T, G, D).transpose(1, 2)
        v = self.v(x).view(B, T, G, D).transpose(1, 2)
        offset = cache.length if cache is not None else 0
        q, k = self.qk_pre(q, k)
        if self.rotary is not None:
            q, k = self.rotary(q, offset), self.rotary(k, offset)
        if cache is not None:
            k, v = cache.append(k=k, v=v)
        q, k = self.qk_post(q, self._repeat(k))
        y = self.attend(q, k, self._repeat(v), offset, self.softmax_scale(D))
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, H * D)))
