"""Function-preserving growth of a pre-norm GPT (Net2Net-style: the grown model computes what the old one did), and the optimizer
state that goes with it.

The grown model is a fresh GPT of the grown config; the old weights are copied into the
leading part of each tensor (per q/k/v chunk for a fused projection) and the new parts are
set so the function does not change:

- depth: a new block's attention and MLP output projections (weight and bias) are zero, so
  the block is the identity;
- heads and MLP width: the new columns of the output projections are zero;
- d_model: whatever writes into the residual stream (embedding and position columns, output
  rows of the projections) is zero on the new coordinates, so they stay 0. RMSNorm's gain on
  the old coordinates is scaled by sqrt(d/d') (its mean square is now taken over d' numbers,
  d' - d of them zero): exact. LayerNorm's mean and variance would change, so its layers
  become ``MaskedLayerNorm`` (MSG): statistics over the old coordinates, outputs on the new
  ones multiplied by a ramp that rises 0 -> 1 over ``ramp_steps``: exact at the growth step
  whatever the new weights are, and a plain LayerNorm once the ramp is done.
"""

from __future__ import annotations

import math

import torch
from torch import nn

Region = list[tuple[tuple, tuple]]  # (index into the new tensor, index into the old one) pairs


class MaskedLayerNorm(nn.LayerNorm):
    """LayerNorm over d' features whose statistics weigh the last d' - d_old features by
    ``ramp`` (a buffer, 0 -> 1) and whose outputs there are multiplied by it."""

    def __init__(self, d: int, d_old: int, eps: float, bias: bool):
        super().__init__(d, eps=eps, bias=bias)
        self.d_old = d_old
        self.register_buffer("ramp", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x.size(-1)
        idx = torch.arange(d, device=x.device)
        m = torch.where(idx < self.d_old, torch.ones((), device=x.device), self.ramp.float())
        xf = x.float()
        total = m.sum()
        mu = (xf * m).sum(-1, keepdim=True) / total
        var = ((xf - mu).square() * m).sum(-1, keepdim=True) / total
        y = (xf - mu) * torch.rsqrt(var + self.eps) * self.weight.float()
        if self.bias is not None:
            y = y + self.bias.float()
        return (y * m).to(x.dtype)


def _region(name: str, new_shape: torch.Size, old_shape: torch.Size) -> Region:
    """Where the old tensor goes in the new one: its leading corner, except for a fused q/k/v
    projection whose output axis is three chunks (q heads, k heads, v heads)."""
    if name.endswith("attn.qkv.weight") or name.endswith("attn.qkv.bias"):
        o, n = old_shape[0] // 3, new_shape[0] // 3
        rest = tuple(slice(0, s) for s in old_shape[1:])
        return [((slice(c * n, c * n + o),) + rest, (slice(c * o, (c + 1) * o),) + tuple(slice(None) for _ in rest))
                for c in range(3)]
    return [(tuple(slice(0, s) for s in old_shape), tuple(slice(None) for _ in old_shape))]


def _rename(name: str, block_map: dict[int, int]) -> str:
    if name.startswith("blocks."):
        _, i, rest = name.split(".", 2)
        return f"blocks.{block_map[int(i)]}.{rest}"
    return name


@torch.no_grad()
def grow(old: nn.Module, new: nn.Module, positions: list[int]) -> dict[str, tuple[str, Region]]:
    """Copy ``old`` into the freshly built grown model ``new`` (same device) and make the new
    parts function-preserving. ``positions``: indices of the inserted blocks. Returns, for
    every new parameter that holds old values, the old parameter's name and the region."""
    d_old, d_new = old.cfg.d_model, new.cfg.d_model
    old_blocks = [i for i in range(len(new.blocks)) if i not in set(positions)]
    block_map = dict(enumerate(old_blocks))
    new_params = dict(new.named_parameters())
    mapping: dict[str, tuple[str, Region]] = {}
    for name, p_old in old.named_parameters():
        new_name = _rename(name, block_map)
        p_new = new_params[new_name]
        region = _region(new_name, p_new.shape, p_old.shape)
        for n_idx, o_idx in region:
            p_new[n_idx] = p_old[o_idx].to(p_new.dtype)
        mapping[new_name] = (name, region)
    grown_d = d_new > d_old
    for name, module in new.named_modules():
        if getattr(module, "is_residual_out", False):  # attn.proj, mlp.down
            block = int(name.split(".")[1])
            if block in positions:
                module.weight.zero_()
                if module.bias is not None:
                    module.bias.zero_()
            else:  # new output rows (d) and new input columns (heads, hidden units) of an old block
                in_old = mapping[f"{name}.weight"][1][0][0][1].stop
                module.weight[d_old:, :] = 0
                module.weight[:, in_old:] = 0
                if module.bias is not None:
                    module.bias[d_old:] = 0
    if grown_d:
        new.wte.weight[:, d_old:] = 0  # tied: the LM head too
        if not new.cfg.tie_embeddings:
            new.lm_head.weight[:, d_old:] = 0
        if new.wpe is not None:
            for table in new.wpe.tables:
                table.weight[:, d_old:] = 0
        if (conviction := new.head("conviction")) is not None:
            conviction.proj.weight[:, d_old:] = 0
        _grow_norms(new, d_old)
    return mapping


def _residual_norms(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, norm) for the norms over the residual stream: ln1, ln2, ln_f."""
    out = []
    for name, module in model.named_modules():
        for attr, child in module._modules.items():
            if attr in ("ln1", "ln2", "ln_f") and isinstance(child, (nn.LayerNorm, nn.RMSNorm)):
                out.append((module, attr, child))
    return out


@torch.no_grad()
def _grow_norms(model: nn.Module, d_old: int) -> None:
    for parent, attr, norm in _residual_norms(model):
        d = norm.weight.numel()
        if isinstance(norm, nn.RMSNorm):
            norm.weight[:d_old] *= math.sqrt(d_old / d)  # (its eps is scaled by d_old/d too: set_rms_eps)
        else:
            _mask(parent, attr, norm, d_old)


def set_rms_eps(model: nn.Module, eps: float) -> None:
    """RMSNorm over the residual stream after d_model growth: eps scaled by d_old/d' as well,
    so sqrt(mean(x^2) + eps) over d' numbers is exactly sqrt(d/d') times the old one."""
    for _, _, norm in _residual_norms(model):
        if isinstance(norm, nn.RMSNorm):
            norm.eps = eps


def masked_norms(model: nn.Module) -> list[MaskedLayerNorm]:
    return [m for m in model.modules() if isinstance(m, MaskedLayerNorm)]


def add_masked_norms(model: nn.Module, d_old: int) -> None:
    """The structure a LayerNorm model has right after a d_model growth (to load a checkpoint
    written during the ramp)."""
    for parent, attr, norm in _residual_norms(model):
        if isinstance(norm, nn.LayerNorm) and not isinstance(norm, MaskedLayerNorm):
            _mask(parent, attr, norm, d_old)


def _mask(parent: nn.Module, attr: str, norm: nn.LayerNorm, d_old: int) -> None:
    """Put a MaskedLayerNorm holding ``norm``'s own Parameters in its place."""
    masked = MaskedLayerNorm(norm.weight.numel(), d_old, norm.eps, norm.bias is not None).to(norm.weight.device)
    masked.weight, masked.bias = norm.weight, norm.bias
    setattr(parent, attr, masked)


@torch.no_grad()
def unmask_norms(model: nn.Module) -> None:
    """A finished ramp: plain LayerNorms with the same Parameters (the next stage's structure)."""
    for parent, attr, norm in _residual_norms(model):
        if isinstance(norm, MaskedLayerNorm):
            plain = nn.LayerNorm(norm.weight.numel(), eps=norm.eps, bias=norm.bias is not None, device="meta")
            plain.weight, plain.bias = norm.weight, norm.bias
            setattr(parent, attr, plain)


@torch.no_grad()
def transfer_optimizer_state(old_state: dict[int, dict], old_params: dict[str, nn.Parameter],
                             new_opt_list: list[torch.optim.Optimizer], new_names: dict[int, str],
                             mapping: dict[str, tuple[str, Region]] | None) -> None:
    """Carry optimizer state into the new parameters. Kept parameters (same object) keep their
    state. A grown parameter gets its old entries' state in their new place; its new entries get
    m = 0 and, for Adam's second moment, the tensor's mean v instead of 0: with the step count
    already large, v = 0 would make the first update ≈ lr·sign(g)·(1-β1)/sqrt(1-β2) (3.16 lr at
    β2 = 0.999), the bias-correction surprise. Wholly new parameters start fresh."""
    for opt in new_opt_list:
        for group in opt.param_groups:
            for p in group["params"]:
                if id(p) in old_state:
                    opt.state[p] = old_state[id(p)]
                    continue
                name = new_names.get(id(p))
                if mapping is None or name not in mapping:
                    continue
                old_name, region = mapping[name]
                st = old_state.get(id(old_params[old_name]))
                if not st:
                    continue
                shape = old_params[old_name].shape
                new_st = {}
                for key, value in st.items():
                    if torch.is_tensor(value) and value.shape == shape and value.dim() > 0:
                        fill = value.float().mean().item() if key == "exp_avg_sq" else 0.0
                        t = torch.full(p.shape, fill, dtype=value.dtype, device=value.device)
                        for n_idx, o_idx in region:
                            t[n_idx] = value[o_idx]
                        new_st[key] = t
                    else:
                        new_st[key] = value.clone() if torch.is_tensor(value) else value
                opt.state[p] = new_st
