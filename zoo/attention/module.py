"""What every attention kind shares: the causal (and sparse) mask, RoPE, the q/k transforms
(QK-norm, or nGPT's normalization with s_qk), scaled_dot_product_attention, and its cache."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from zoo.attention.spec import AttentionSpec
from zoo.kind import Regime, head_multiplier
from zoo.nn.layers import Scale, unit
from zoo.nn.norms import make_norm
from zoo.nn.positions import RelativePositions, Rotary

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig


def allowed(q_pos: torch.Tensor, k_pos: torch.Tensor, spec: AttentionSpec) -> torch.Tensor:
    """(Tq, Tk) booleans: may the query at q_pos see the key at k_pos? Causal, and the
    sparse pattern of the spec: sliding (the last ``window`` positions, itself included),
    strided (that, or every ``stride``-th position further back: the union of the sparse
    transformer's two strided heads), dilated (``window`` keys ``stride`` apart)."""
    dist = q_pos[:, None] - k_pos[None, :]
    ok = dist >= 0
    if spec.pattern == "sliding":
        ok &= dist < spec.window
    elif spec.pattern == "strided":
        ok &= (dist < spec.window) | (dist % spec.stride == 0)
    elif spec.pattern == "dilated":
        ok &= (dist % spec.stride == 0) & (dist // spec.stride < spec.window)
    return ok


class Cache:
    """Tensors one layer keeps while decoding, by name, each (B, ..., T, ...) with the time
    axis ``time_dim``; ``numbers_per_token`` is what a token costs in the cache."""

    def __init__(self, time_dim: int = 2) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.time_dim = time_dim
        self.extra: dict[str, torch.Tensor] = {}  # per-sequence state that does not grow with T

    @property
    def length(self) -> int:
        if not self.tensors:
            return 0
        t = next(iter(self.tensors.values()))
        return t.size(self.time_dim)

    def append(self, **new: torch.Tensor) -> list[torch.Tensor]:
        for name, value in new.items():
            old = self.tensors.get(name)
            self.tensors[name] = value if old is None else torch.cat((old, value), dim=self.time_dim)
        return [self.tensors[name] for name in new]

    def numbers_per_token(self) -> int:
        """Numbers stored per token (per sequence): the sum over tensors of their size / (B·T)."""
        n = 0
        for t in self.tensors.values():
            n += t.numel() // (t.size(0) * t.size(self.time_dim))
        return n


class AttentionBase(nn.Module):
    def __init__(self, m: ModelConfig, spec: AttentionSpec, layer: int, regime: Regime):
        super().__init__()
        self.spec, self.layer, self.regime = spec, layer, regime
        self.ngpt = regime.ngpt
        self.n_head, self.head_dim = spec.heads(m)
        self.d_model = m.d_model
        self.dropout = m.dropout
        self.resid_drop = nn.Dropout(m.dropout)
        self._masks: dict[tuple, torch.Tensor] = {}
        # μP: scores scaled by 1/d instead of 1/sqrt(d), the same at the base width (1 under SP)
        self.mup_score = 1.0 / math.sqrt(head_multiplier(m))
        # Transformer-XL's relative positions: a bias on every score, from the distance
        self.relative = RelativePositions(m.d_model, self.n_head, self.head_dim) if m.pos == "xl_relative" else None

    # -- pieces the kinds use ---------------------------------------------------------------
    def _qk_norms(self, m: ModelConfig, dim: int) -> None:
        self.q_norm = make_norm(m.norm, dim, m.bias) if m.qk_norm else None
        self.k_norm = make_norm(m.norm, dim, m.bias) if m.qk_norm else None

    def _ngpt_scale(self, size: int) -> None:
        # s_qk: init 1, scale 1/sqrt(d_model) (per head-dim element; the simple variant keeps it fixed)
        self.s_qk = Scale(size, 1.0, 1.0 / math.sqrt(self.d_model)) if self.regime.trains_scales else None

    # q and k go through qk_pre (QK-norm), then RoPE, then qk_post (nGPT: s_qk · Norm per head)
    def qk_pre(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if getattr(self, "q_norm", None) is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k

    def qk_post(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.ngpt:
            return q, k
        q, k = unit(q), unit(k)
        if self.s_qk is not None:
            s = self.s_qk().view(self.s_qk_shape()).to(q.dtype)
            q, k = q * s, k * s
        return q, k

    def s_qk_shape(self) -> tuple[int, ...]:
        """How s_qk lines up with q and k, (heads, 1, dim) for (B, H, T, D) tensors."""
        return (self.n_head, 1, -1)

    def softmax_scale(self, dim: int) -> float:
        # nGPT: q and k are unit vectors (times s_qk), so the logit scale is sqrt(d), not 1/sqrt(d)
        return math.sqrt(dim) if self.ngpt else self.mup_score / math.sqrt(dim)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offset: int,
               scale: float | None = None) -> torch.Tensor:
        """SDPA over (B, H, Tq, D) queries at positions offset.. and (B, H', Tk, D) keys from 0,
        causal plus the sparse pattern. The plain causal case uses the fused path."""
        if q.dtype == torch.bfloat16 and q.device.type == "cpu":
            # CPU's bf16 flash-attention backward is ~6x slower than fp32's (3.1 ms against 0.55 ms a
            # layer at the speedrun's shape); under bf16 autocast the matmuls stay bf16, this does not
            with torch.autocast("cpu", enabled=False):  # (autocast would cast them back to bf16)
                return self.attend(q.float(), k.float(), v.float(), offset, scale).to(q.dtype)
        Tq, Tk = q.size(-2), k.size(-2)
        drop = self.dropout if self.training else 0.0
        if self.relative is not None:
            return self._attend_relative(q, k, v, offset, scale, drop)
        if self.spec.pattern == "full" and offset == 0 and Tq == Tk:
            return F.scaled_dot_product_attention(q, k, v, is_causal=Tq > 1, dropout_p=drop, scale=scale)
        if self.spec.pattern == "full" and Tq == 1:  # one new token sees everything cached
            return F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=scale)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask(Tq, Tk, offset, q.device),
                                              dropout_p=drop, scale=scale)

    def _attend_relative(self, q, k, v, offset: int, scale: float | None, drop: float) -> torch.Tensor:
        """Transformer-XL's score, (q + u) . k + (q + v) . W_R R_(i-j), as SDPA over q + u with the
        position term as an additive mask (the causal and sparse pattern folded in as -inf)."""
        Tq, Tk = q.size(-2), k.size(-2)
        scale = scale if scale is not None else 1.0 / math.sqrt(q.size(-1))
        rel = self.relative
        r = rel.encodings(offset + Tq, q.dtype)  # (H, L, D), distances 0 .. offset + Tq - 1
        by_distance = (q + rel.v.to(q.dtype)[None, :, None, :]) @ r.transpose(-2, -1)[None]  # (B, H, Tq, L)
        q_pos = torch.arange(offset, offset + Tq, device=q.device)
        dist = (q_pos[:, None] - torch.arange(Tk, device=q.device)[None, :]).clamp(0, offset + Tq - 1)
        bias = by_distance.gather(-1, dist.expand(*by_distance.shape[:2], Tq, Tk))
        ok = self.mask(Tq, Tk, offset, q.device)
        bias = (bias * scale).masked_fill(~ok, float("-inf"))
        return F.scaled_dot_product_attention(q + rel.u.to(q.dtype)[None, :, None, :], k, v, attn_mask=bias,
                                              dropout_p=drop, scale=scale)

    def mask(self, Tq: int, Tk: int, offset: int, device: torch.device) -> torch.Tensor:
        key = (Tq, Tk, offset, device)
        m = self._masks.get(key)
        if m is None:
            q_pos = torch.arange(offset, offset + Tq, device=device)
            m = allowed(q_pos, torch.arange(Tk, device=device), self.spec)
            if offset == 0:  # training shapes repeat; decoding offsets do not (keep memory flat)
                self._masks[key] = m
        return m

    def scores(self, q: torch.Tensor, k: torch.Tensor, offset: int, scale: float) -> torch.Tensor:
        """Explicit softmax(q k^T) with the same mask, (B, H, Tq, Tk): for tests and the
        attention maps of the differential kinds."""
        s = (q @ k.transpose(-2, -1)) * scale
        m = self.mask(q.size(-2), k.size(-2), offset, q.device)
        return torch.softmax(s.float().masked_fill(~m, float("-inf")), dim=-1).to(q.dtype)

    # -- what every kind answers ------------------------------------------------------------
    def new_cache(self) -> Cache:
        return Cache()

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        raise NotImplementedError


def rotary_for(m: ModelConfig, dim: int) -> Rotary | None:
    return Rotary(dim, m.block_size, m.rope_base) if m.pos == "rope" and dim > 0 else None
