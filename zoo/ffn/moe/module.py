"""The mixture-of-experts kind: top-k routing over E dense experts (Switch / Mixtral style).

The router is fp32 and has no bias; each token goes to its top-k experts, weighted by the
top-k softmax probabilities renormalized to sum to one. Named losses: ``moe_balance``, the
Switch load-balancing loss E · Σ_i f_i P_i with f_i the share of routing slots (token, k)
sent to expert i and P_i its mean router probability (a uniform router gives exactly 1), and
``moe_z``, mean(logsumexp(logits)^2). Metrics: the busiest expert's load over the uniform
share (``moe/load_max``, 1 = balanced) and the share of slots dropped by a capacity limit.

Dispatch gathers each expert's tokens and adds its outputs back (dropless by default);
``capacity_factor`` > 0 keeps at most ceil(tokens · k / E · factor) per expert during training,
in token order, and the rest skip that expert (the residual carries them). Evaluation and
generation are dropless: a capacity limit makes a token's output depend on the rest of the
batch, which a causal model's inference must not. Expert weights are 3-D tensors
(role ``expert``), so Muon never sees them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from zoo.ffn.module import make_activation
from zoo.ffn.moe.spec import MoESpec
from zoo.kind import PRENORM, Regime
from zoo.modules import builds
from zoo.nn.collect import Collector

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig


@builds(MoESpec)
class MoE(nn.Module):
    def __init__(self, m: ModelConfig, spec: MoESpec, regime: Regime = PRENORM):
        super().__init__()
        E, d, f = spec.experts, m.d_model, spec.width(m)
        self.spec, self.E, self.k = spec, E, spec.top_k
        self.router = nn.Linear(d, E, bias=False)
        self.router.param_roles = {"weight": "router"}  # type: ignore[assignment]
        self.w_up = nn.Parameter(torch.empty(E, f, d))
        self.w_gate = nn.Parameter(torch.empty(E, f, d)) if spec.gated else None
        self.w_down = nn.Parameter(torch.empty(E, d, f))
        self.b_up = nn.Parameter(torch.zeros(E, f)) if m.bias else None
        self.b_gate = nn.Parameter(torch.zeros(E, f)) if m.bias and spec.gated else None
        self.b_down = nn.Parameter(torch.zeros(E, d)) if m.bias else None
        # SoLU has a LayerNorm of its own: one per expert; the other activations hold nothing
        self.acts = nn.ModuleList(make_activation(spec.activation, f, m.bias)
                                  for _ in range(E if spec.activation == "solu" else 1))
        full = regime.trains_scales
        self.s_u = nn.Parameter(torch.ones(E, f)) if full else None
        self.s_v = nn.Parameter(torch.ones(E, f)) if full and spec.gated else None
        self.uv_scale = math.sqrt(d)
        self.drop = nn.Dropout(m.dropout)
        self.param_roles = {"w_up": "expert", "w_gate": "expert", "w_down": "expert", "s_u": "scale", "s_v": "scale"}
        self.residual_out_params = {"w_down"}
        for p in (self.w_up, self.w_gate, self.w_down):
            if p is not None:
                nn.init.normal_(p, 0.0, 0.02)

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        u = F.linear(x, self.w_up[e], self.b_up[e] if self.b_up is not None else None)
        if self.s_u is not None:
            u = u * (self.s_u[e] * self.uv_scale).to(u.dtype)
        act = self.acts[e if len(self.acts) > 1 else 0]
        if self.w_gate is not None:
            g = F.linear(x, self.w_gate[e], self.b_gate[e] if self.b_gate is not None else None)
            if self.s_v is not None:
                g = g * (self.s_v[e] * self.uv_scale).to(g.dtype)
            h = act(g) * u
        else:
            h = act(u)
        return F.linear(h, self.w_down[e], self.b_down[e] if self.b_down is not None else None)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, probs, top-k expert ids, their renormalized weights), router in fp32."""
        logits = F.linear(x.float(), self.router.weight.float())
        probs = torch.softmax(logits, dim=-1)
        top_p, top_i = probs.topk(self.k, dim=-1)
        return logits, probs, top_i, top_p / top_p.sum(-1, keepdim=True)

    def forward(self, x: torch.Tensor, collect: Collector | None = None) -> torch.Tensor:
        B, T, d = x.shape
        xf = x.reshape(-1, d)
        N = xf.size(0)
        logits, probs, top_i, weights = self.route(xf)
        out = torch.zeros_like(xf)
        cf = self.spec.capacity_factor
        # capacity applies in training only: a token's place in line depends on the other tokens of
        # the batch, which evaluation and decoding (one token at a time) must not depend on
        capacity = math.ceil(N * self.k / self.E * cf) if cf > 0 and self.training else None
        dropped = 0
        for e in range(self.E):
            tok, slot = (top_i == e).nonzero(as_tuple=True)  # in token order
            if capacity is not None and tok.numel() > capacity:
                dropped += tok.numel() - capacity
                tok, slot = tok[:capacity], slot[:capacity]
            if tok.numel() == 0:
                continue
            y = self.expert(e, xf[tok])
            # summed in the residual stream's dtype: under autocast the experts give bf16/fp16
            # while the stream stays fp32 (index_add_ takes no mixed dtypes; found on an H200)
            out.index_add_(0, tok, (y * weights[tok, slot].unsqueeze(-1).to(y.dtype)).to(out.dtype))
        if collect is not None:
            share = F.one_hot(top_i, self.E).sum(dim=(0, 1)).float() / (N * self.k)  # f_i, sums to 1
            collect.loss("moe_balance", self.E * (share * probs.mean(0)).sum(), self.spec.balance_weight)
            collect.loss("moe_z", torch.logsumexp(logits, dim=-1).square().mean(), self.spec.z_weight)
            collect.metric("moe/load_max", share.max() * self.E)
            collect.metric("moe/dropped", torch.tensor(dropped / (N * self.k)))
        return self.drop(out.view(B, T, d))
