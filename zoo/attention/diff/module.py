"""Differential attention (DIFF, Ye et al. 2024; reference: microsoft/unilm
Diff-Transformer/multihead_diffattn.py) and DINT (Cang et al. 2025).

With ``[model] n_head`` = H and head size d there are H/2 differential heads. Head i has two
query/key maps (the reference's heads 2i and 2i+1) of size d and one value of size 2d:

    DiffAttn = (softmax(Q1 K1^T / sqrt d) - λ softmax(Q2 K2^T / sqrt d)) V
    λ = exp(λq1·λk1) - exp(λq2·λk2) + λ_init,   λ_init = 0.8 - 0.6 exp(-0.3 · layer)

then a per-head RMSNorm over 2d times (1 - λ_init). Computed as two SDPA calls sharing V
(A1 V - λ A2 V is the same product), so the fused kernels still apply.

DINT adds λ·G, G_i = the mean of the first map's rows m <= i: every row of the map then sums
to one. The causal form matters (a mean over all rows would look at the future). G V is the
running mean of A1 V over positions, so decoding keeps one running sum per head.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from zoo.attention.diff.spec import DiffSpec
from zoo.attention.module import AttentionBase, Cache, rotary_for
from zoo.kind import PRENORM, Regime
from zoo.modules import builds
from zoo.nn.layers import linear

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig


def lambda_init_for(layer: int) -> float:
    """λ_init by depth (0-based layer): 0.2, 0.356, 0.471, 0.556, ..."""
    return 0.8 - 0.6 * math.exp(-0.3 * layer)


class Differential(nn.Module):
    """The differential combination of two attention outputs that share their values:
    o = o1 - λ o2 (+ λ·running mean of o1 for DINT), then the per-head norm times (1 - λ_init).
    Used by the diff and dint kinds (MHA projections) and by mla with ``map = "diff" | "dint"``."""

    def __init__(self, qk_dim: int, v_dim: int, pairs: int, layer: int, lambda_schedule: str, lambda_init: float,
                 subln: bool, version: int, integral: bool, d_model: int, bias: bool):
        super().__init__()
        self.version, self.integral = version, integral
        self.lambda_init = lambda_init_for(layer) if lambda_schedule == "depth" else lambda_init
        if version == 1:
            for name in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"):
                setattr(self, name, nn.Parameter(torch.randn(qk_dim) * 0.1))
            self.subln = nn.RMSNorm(v_dim, eps=1e-5) if subln else None
            self.param_roles = {name: "scale" for name in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2")}
        else:  # V2: λ = sigmoid(W_λ x) per token and head, no sub-norm
            self.lambda_proj = linear(d_model, pairs, bias)
            self.subln = None

    def lam(self, x: torch.Tensor) -> torch.Tensor:
        """λ, broadcastable to (B, heads, T, 1)."""
        if self.version == 1:
            l1 = torch.exp((self.lambda_q1 * self.lambda_k1).sum().float())
            l2 = torch.exp((self.lambda_q2 * self.lambda_k2).sum().float())
            return (l1 - l2 + self.lambda_init).to(x.dtype).view(1, 1, 1, 1)
        return torch.sigmoid(self.lambda_proj(x)).transpose(1, 2).unsqueeze(-1)

    def combine(self, o1: torch.Tensor, o2: torch.Tensor, x: torch.Tensor, offset: int,
                cache: Cache | None) -> torch.Tensor:
        lam = self.lam(x)
        o = o1 - lam * o2
        if self.integral:
            o = o + lam * self.running_mean(o1, offset, cache)
        if self.subln is not None:
            o = self.subln(o) * (1.0 - self.lambda_init)
        return o

    @staticmethod
    def running_mean(o1: torch.Tensor, offset: int, cache: Cache | None) -> torch.Tensor:
        """G V: the mean of A1 V over positions 0..i, carried across decoding steps."""
        total = torch.cumsum(o1, dim=2)
        if cache is not None:
            prev = cache.extra.get("o1_sum")
            if prev is not None:
                total = total + prev.unsqueeze(2)
            cache.extra["o1_sum"] = total[:, :, -1]
        count = torch.arange(offset + 1, offset + o1.size(2) + 1, device=o1.device, dtype=o1.dtype)
        return total / count.view(1, 1, -1, 1)

    def map(self, a1: torch.Tensor, a2: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The combined attention map, (B, heads, T, T): A1 - λA2 (+ λG)."""
        lam = self.lam(x)
        a = a1 - lam * a2
        if self.integral:
            rows = torch.arange(1, a1.size(-2) + 1, device=x.device, dtype=a1.dtype).view(1, 1, -1, 1)
            a = a + lam * torch.cumsum(a1, dim=-2) / rows
        return a


@builds(DiffSpec)
class Diff(AttentionBase):
    integral = False  # DINT: add λ·G

    def __init__(self, m: ModelConfig, spec: DiffSpec, layer: int, regime: Regime = PRENORM):
        super().__init__(m, spec, layer, regime)
        H, D = self.n_head, self.head_dim
        self.pairs = H // 2
        inner = H * D
        self.qkv = linear(m.d_model, 3 * inner, m.bias, spec.rank)
        self.proj = linear(inner, m.d_model, m.bias, spec.rank, residual_out=True)
        self.diff = Differential(D, 2 * D, self.pairs, layer, spec.lambda_schedule, spec.lambda_init, spec.subln,
                                 spec.version, self.integral, m.d_model, m.bias)
        self._qk_norms(m, D)
        self._ngpt_scale(inner)
        self.rotary = rotary_for(m, D)

    @property
    def lambda_init(self) -> float:
        return self.diff.lambda_init

    def _project(self, x: torch.Tensor, offset: int):
        B, T, _ = x.shape
        H, D = self.n_head, self.head_dim
        q, k, v = self.qkv(x).split(H * D, dim=-1)
        q = q.view(B, T, H, D).transpose(1, 2)
        k = k.view(B, T, H, D).transpose(1, 2)
        v = v.view(B, T, self.pairs, 2 * D).transpose(1, 2)
        q, k = self.qk_pre(q, k)
        if self.rotary is not None:
            q, k = self.rotary(q, offset), self.rotary(k, offset)
        q, k = self.qk_post(q, k)
        return q, k, v

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        offset = cache.length if cache is not None else 0
        q, k, v = self._project(x, offset)
        if cache is not None:
            k, v = cache.append(k=k, v=v)
        scale = self.softmax_scale(self.head_dim)
        o1 = self.attend(q[:, 0::2], k[:, 0::2], v, offset, scale)
        o2 = self.attend(q[:, 1::2], k[:, 1::2], v, offset, scale)
        o = self.diff.combine(o1, o2, x, offset, cache)
        return self.resid_drop(self.proj(o.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)))

    @torch.no_grad()
    def maps(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map of each differential head, (B, heads, T, T): A1 - λA2 (+ λG)."""
        q, k, _ = self._project(x, 0)
        scale = self.softmax_scale(self.head_dim)
        return self.diff.map(self.scores(q[:, 0::2], k[:, 0::2], 0, scale),
                             self.scores(q[:, 1::2], k[:, 1::2], 0, scale), x)

