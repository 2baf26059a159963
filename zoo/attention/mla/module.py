"""Multi-head latent attention (DeepSeek-V2; reference: deepseek-ai/DeepSeek-V3, class MLA).

c_KV = Norm(W_DKV h) (size d_c) and a decoupled RoPE key k_R = RoPE(W_KR h) (size d_h^R, one
for all heads) are all the cache keeps. Per head: k = [W_UK c_KV ; k_R], v = W_UV c_KV,
q = [q_C ; RoPE(q_R)] from h (or from a compressed c_Q = Norm(W_DQ h)); scores are scaled by
1/sqrt(d_h + d_h^R). RoPE never touches k_C.

Two ways to compute the same thing: the naive path materializes K and V from the latent; the
absorbed path folds W_UK into the query and W_UV into the output, attending in the latent
space (what makes the small cache cheap to decode from). A test checks they agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from zoo.attention.diff.module import Differential
from zoo.attention.mla.spec import MLASpec
from zoo.attention.module import AttentionBase, Cache, rotary_for
from zoo.kind import PRENORM, Regime
from zoo.modules import builds
from zoo.nn.layers import linear
from zoo.nn.norms import make_norm

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig


@builds(MLASpec)
class MLA(AttentionBase):
    def __init__(self, m: ModelConfig, spec: MLASpec, layer: int, regime: Regime = PRENORM):
        super().__init__(m, spec, layer, regime)
        H, D, self.d_c, self.d_r = spec.dims(m)
        self.kv_down = linear(m.d_model, self.d_c + self.d_r, m.bias)  # W_DKV and W_KR in one matmul
        self.kv_norm = make_norm(m.norm, self.d_c, m.bias)
        self.kv_up = linear(self.d_c, H * 2 * D, False)  # W_UK and W_UV, per head [k_C ; v]
        if spec.q_latent_dim:
            self.q_down = linear(m.d_model, spec.q_latent_dim, m.bias)
            self.q_lat_norm = make_norm(m.norm, spec.q_latent_dim, m.bias)
            self.q_up = linear(spec.q_latent_dim, H * (D + self.d_r), False)
        else:
            self.q_proj = linear(m.d_model, H * (D + self.d_r), m.bias)
        self.proj = linear(H * D, m.d_model, m.bias, residual_out=True)
        self._ngpt_scale(H * (D + self.d_r))
        self.rotary = rotary_for(m, self.d_r)
        # absorbing W_UK needs k to be linear in the latent: no per-head norm of k
        self.absorb = spec.absorb and not regime.ngpt
        # a differential map: head pairs (2i, 2i+1) are one differential head whose value is [v_2i ; v_2i+1]
        self.diff = Differential(D + self.d_r, 2 * D, H // 2, layer, spec.lambda_schedule, spec.lambda_init,
                                 spec.subln, 1, spec.map == "dint", m.d_model, m.bias) if spec.map != "softmax" else None

    def new_cache(self) -> Cache:
        return Cache(time_dim=1)  # c_KV (B, T, d_c) and k_R (B, T, d_h^R)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "q_up"):
            return self.q_up(self.q_lat_norm(self.q_down(x)))
        return self.q_proj(x)

    def forward(self, x: torch.Tensor, cache: Cache | None = None, absorb: bool | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        H, D, dc, dr = self.n_head, self.head_dim, self.d_c, self.d_r
        offset = cache.length if cache is not None else 0
        c, k_r = self.kv_down(x).split([dc, dr], dim=-1)
        c = self.kv_norm(c)
        if self.rotary is not None:
            k_r = self.rotary(k_r.unsqueeze(1), offset).squeeze(1)  # (B, T, dr), shared by every head
        q = self._query(x).view(B, T, H, D + dr).transpose(1, 2)  # (B, H, T, D + dr)
        q_c, q_r = q.split([D, dr], dim=-1)
        if self.rotary is not None:
            q_r = self.rotary(q_r, offset)
        if cache is not None:
            c, k_r = cache.append(c=c, k_r=k_r)
        scale = self.softmax_scale(D + dr)
        if self.diff is not None:
            y = self._differential(q_c, q_r, c, k_r, x, offset, scale, cache)
        elif self.absorb if absorb is None else absorb:
            y = self._absorbed(q_c, q_r, c, k_r, offset, scale)
        else:
            y = self._naive(q_c, q_r, c, k_r, offset, scale)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, H * D)))

    def _keys(self, q_c, q_r, c, k_r):
        """Naive q, k and v per head, (B, H, T, .), from the latent."""
        B, Tk = c.shape[:2]
        H, D, dr = self.n_head, self.head_dim, self.d_r
        k_c, v = self.kv_up(c).view(B, Tk, H, 2 * D).transpose(1, 2).split([D, D], dim=-1)
        k = torch.cat((k_c, k_r.unsqueeze(1).expand(B, H, Tk, dr)), dim=-1)
        q = torch.cat((q_c, q_r), dim=-1)
        q, k = self.qk_post(q, k)  # (no QK-norm for MLA; nGPT's normalization commutes with RoPE)
        return q, k, v

    def _differential(self, q_c, q_r, c, k_r, x, offset, scale, cache):
        q, k, v = self._keys(q_c, q_r, c, k_r)
        B, H, Tk, D = v.shape
        pair_v = v.view(B, H // 2, 2, Tk, D).transpose(2, 3).reshape(B, H // 2, Tk, 2 * D)
        o1 = self.attend(q[:, 0::2], k[:, 0::2], pair_v, offset, scale)
        o2 = self.attend(q[:, 1::2], k[:, 1::2], pair_v, offset, scale)
        o = self.diff.combine(o1, o2, x, offset, cache)  # (B, H/2, T, 2D): back to H heads of D
        return o.view(B, H // 2, -1, 2, D).transpose(2, 3).reshape(B, H, -1, D)

    def _naive(self, q_c, q_r, c, k_r, offset, scale):
        return self.attend(*self._keys(q_c, q_r, c, k_r), offset, scale)

    def _absorbed(self, q_c, q_r, c, k_r, offset, scale):
        """q_C^T W_UK c = (W_UK^T q_C)^T c: attend with [W_UK^T q_C ; q_R] against [c ; k_R] and
        values c, then apply W_UV per head."""
        B, Tk = c.shape[:2]
        H, D = self.n_head, self.head_dim
        w = self.kv_up.weight.view(H, 2 * D, self.d_c)
        w_uk, w_uv = w[:, :D], w[:, D:]  # (H, D, d_c) each
        q_lat = torch.einsum("bhtd,hdc->bhtc", q_c, w_uk)
        q = torch.cat((q_lat, q_r), dim=-1)
        k = torch.cat((c, k_r), dim=-1).unsqueeze(1).expand(B, H, Tk, self.d_c + self.d_r)
        o_lat = self.attend(q, k, c.unsqueeze(1).expand(B, H, Tk, self.d_c), offset, scale)
        return torch.einsum("bhtc,hdc->bhtd", o_lat, w_uv)
