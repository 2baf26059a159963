"""Optimizers and learning-rate schedules, with groups derived from the parameter-role table
(engine/model/roles.py): AdamW with decay/no-decay groups (the token embedding with its own
learning-rate multiplier); Muon for the 2-D hidden matrices (role ``matrix``: never experts,
routers or adapters, which it cannot orthogonalize) with AdamW for the rest; or IVON for
everything. Under nGPT no group decays. Every group keeps a ``base_lr``; the schedule sets
``lr = base_lr * factor(step)`` so multipliers and Muon's own lr follow one curve.

⊥Grad (``orthograd``) is a hook before the step, so it wraps whichever optimizer is chosen."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from engine.model.roles import param_table
from engine.muon import Muon
from runspec.config.schema import RunConfig
from zoo.kind import width_multiplier


def lr_factor(cfg: RunConfig, step: int) -> float:
    """Multiplier on the base learning rate at ``step`` (0-based, before the update)."""
    o = cfg.optim
    if step < o.warmup_steps:
        return (step + 1) / (o.warmup_steps + 1)
    if o.schedule == "constant":
        return 1.0
    floor = o.min_lr / o.lr
    horizon = cfg.decay_steps
    if o.schedule == "wsd":  # warmup, stable, then a linear decay over the last fraction
        decay_start = horizon - int(o.wsd_decay_fraction * horizon)
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, horizon - decay_start))
        return 1.0 - (1.0 - floor) * progress
    progress = min(1.0, (step - o.warmup_steps) / max(1, horizon - o.warmup_steps))
    if o.schedule == "linear":
        return 1.0 - (1.0 - floor) * progress
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine


def make_ivon(groups: list[dict], cfg: RunConfig, train_tokens: int):
    from ivon import IVON as _IVON

    class IVONWithStep(_IVON):
        """ivon-opt's IVON, whose step count (for its momentum's bias correction) is a plain
        attribute: saved with the state here, so a resume is exact."""

        def state_dict(self):
            state = super().state_dict()
            state["current_step"] = self.current_step
            return state

        def load_state_dict(self, state):
            self.current_step = int(state.pop("current_step", 0))
            super().load_state_dict(state)

    o = cfg.optim
    return IVONWithStep(groups, lr=o.lr, ess=o.ivon_ess or float(train_tokens), hess_init=o.ivon_hess_init,
                        beta1=o.betas[0], beta2=o.ivon_beta2, weight_decay=o.ivon_weight_decay,
                        mc_samples=o.ivon_mc_samples)


class Optimizers:
    """One or two torch optimizers stepped together, as one object for the loop/checkpoint."""

    def __init__(self, optimizers: list[torch.optim.Optimizer], ivon: bool = False):
        self.optimizers = optimizers
        self.ivon = ivon

    @property
    def param_groups(self):
        return [g for opt in self.optimizers for g in opt.param_groups]

    def set_lr(self, factor: float) -> None:
        for g in self.param_groups:
            g["lr"] = g["base_lr"] * factor

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def sampling(self):
        """The context the forward and backward passes of one posterior sample run in: IVON
        perturbs the weights inside it and collects the gradient as it leaves; others: nothing."""
        if self.ivon:
            return self.optimizers[0].sampled_params(train=True)
        return contextlib.nullcontext()

    def samples(self) -> int:
        return self.optimizers[0].mc_samples if self.ivon else 1

    def state_dict(self) -> list[dict]:
        return [opt.state_dict() for opt in self.optimizers]

    def load_state_dict(self, states: list[dict]) -> None:
        for opt, st in zip(self.optimizers, states, strict=True):
            opt.load_state_dict(st)


def build_optimizers(model: nn.Module, cfg: RunConfig, device_type: str, train_tokens: int = 0) -> Optimizers:
    o = cfg.optim
    ngpt = getattr(model, "ngpt", False)
    table = [p for p in param_table(model) if p.param.requires_grad]
    muon = [p.param for p in table if o.name == "muon" and p.role == "matrix" and p.param.dim() == 2]
    rest = [p for p in table if o.name != "muon" or not (p.role == "matrix" and p.param.dim() == 2)]
    decay = 0.0 if ngpt else o.weight_decay  # nGPT: weights live on the sphere, nothing to decay
    # μP (Adam's table): matrices whose both sides grow with width step at lr / m; embeddings, the
    # readout (with its 1/m logit multiplier) and vectors keep lr. Weight decay is AdamW's,
    # decoupled and multiplied by each group's lr, so it follows the multiplier. Muon's matrices
    # take no multiplier: its orthogonalized update already has the width-independent spectral
    # size μP asks of an update (Bernstein et al.), and its shape factor covers the aspect ratio.
    m = width_multiplier(cfg.model)
    hidden = [p for p in rest if p.decayed and p.role in ("matrix", "expert") and m != 1.0]
    in_hidden = {id(p.param) for p in hidden}
    groups = [
        {"params": [p.param for p in rest if p.role == "embedding"], "weight_decay": decay,
         "base_lr": o.lr * o.wte_lr_scale, "name": "embeddings"},
        {"params": [p.param for p in hidden], "weight_decay": decay, "base_lr": o.lr / m, "name": "hidden"},
        {"params": [p.param for p in rest if p.role != "embedding" and p.decayed and id(p.param) not in in_hidden],
         "weight_decay": decay, "base_lr": o.lr, "name": "decay"},
        {"params": [p.param for p in rest if p.role != "embedding" and not p.decayed], "weight_decay": 0.0,
         "base_lr": o.lr, "name": "no_decay"},
    ]
    groups = [g for g in groups if g["params"]]
    for g in groups:
        g["lr"] = g["base_lr"]
    if o.name == "ivon":
        for g in groups:  # IVON's prior precision stands in for weight decay
            g["weight_decay"] = 0.0 if ngpt or g["name"] == "no_decay" else o.ivon_weight_decay
        return Optimizers([make_ivon(groups, cfg, train_tokens)], ivon=True)
    # fused AdamW is one kernel for all parameters, on CUDA and on CPU alike
    fused = device_type in ("cuda", "cpu")
    opts: list[torch.optim.Optimizer] = [
        torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, fused=fused)
    ]
    if muon:
        opts.append(Muon(
            [{"params": muon, "base_lr": o.muon_lr, "lr": o.muon_lr, "name": "muon"}],
            lr=o.muon_lr, momentum=o.muon_momentum, weight_decay=decay,
        ))
    return Optimizers(opts)


@torch.no_grad()
def orthogonalize_grads(params: list[torch.Tensor]) -> None:
    """⊥Grad (Prieto et al. 2025), per tensor: g_perp = g - (w·g / (w·w)) w, rescaled to ||g||.
    A zero weight (or a gradient parallel to it) is left as it is."""
    for p in params:
        g = p.grad
        if g is None:
            continue
        w, gf = p.detach().reshape(-1).float(), g.reshape(-1).float()
        ww = torch.dot(w, w)
        perp = gf - (torch.dot(w, gf) / (ww + 1e-30)) * w
        perp_norm = perp.norm()
        scaled = perp * (gf.norm() / (perp_norm + 1e-30))
        # a gradient parallel to the weight has no orthogonal part: the step is zero, not noise.
        # "Parallel" up to float32 rounding (~1e-7 relative): a one-element tensor (a scalar gain,
        # a lambda) is always parallel, and rescaling its rounding residue (one ulp, when it is not
        # exactly zero) to ||g|| made a full-size step of random sign
        orth = torch.where(perp_norm > 1e-5 * gf.norm(), scaled, torch.zeros_like(gf))
        g.copy_(torch.where(ww > 0, orth, gf).view_as(g).to(g.dtype))
