"""Optimizers (AdamW with decay/no-decay groups, or Muon for hidden matrices + AdamW for the
rest) and learning-rate schedules. Every group keeps a ``base_lr``; the schedule sets
``lr = base_lr * factor(step)`` so embedding multipliers and Muon's own lr follow one curve."""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.config import RunConfig
from engine.muon import Muon


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


class Optimizers:
    """One or two torch optimizers stepped together, as one object for the loop/checkpoint."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self):
        return [g for opt in self.optimizers for g in opt.param_groups]

    def set_lr(self, factor: float) -> None:
        for g in self.param_groups:
            g["lr"] = g["base_lr"] * factor

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def state_dict(self) -> list[dict]:
        return [opt.state_dict() for opt in self.optimizers]

    def load_state_dict(self, states: list[dict]) -> None:
        for opt, st in zip(self.optimizers, states, strict=True):
            opt.load_state_dict(st)


def build_optimizers(model: nn.Module, cfg: RunConfig, device_type: str) -> Optimizers:
    o = cfg.optim
    wte = model.wte.weight
    seen: set[int] = set()

    def unique(params):
        out = []
        for p in params:
            if id(p) not in seen and p.requires_grad:
                seen.add(id(p))
                out.append(p)
        return out

    embedding = unique([wte])  # tied: this is the LM head too
    # Muon orthogonalizes updates of 2-D hidden matrices; embeddings and the LM head stay on AdamW.
    hidden_2d = unique([p for name, p in model.named_parameters()
                        if p.dim() == 2 and name.startswith(("blocks.", "output_projection."))]) if o.name == "muon" else []
    rest = unique([p for p in model.parameters()])
    decay = [p for p in rest if p.dim() >= 2]
    no_decay = [p for p in rest if p.dim() < 2]
    adam_groups = [
        {"params": embedding, "weight_decay": o.weight_decay, "base_lr": o.lr * o.wte_lr_scale, "name": "embeddings"},
        {"params": decay, "weight_decay": o.weight_decay, "base_lr": o.lr, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "base_lr": o.lr, "name": "no_decay"},
    ]
    adam_groups = [g for g in adam_groups if g["params"]]
    for g in adam_groups:
        g["lr"] = g["base_lr"]
    # fused AdamW is one kernel for all parameters, on CUDA and on CPU alike
    fused = device_type in ("cuda", "cpu")
    opts: list[torch.optim.Optimizer] = [
        torch.optim.AdamW(adam_groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, fused=fused)
    ]
    if hidden_2d:
        opts.append(Muon(
            [{"params": hidden_2d, "base_lr": o.muon_lr, "lr": o.muon_lr, "name": "muon"}],
            lr=o.muon_lr, momentum=o.muon_momentum, weight_decay=o.weight_decay,
        ))
    return Optimizers(opts)
