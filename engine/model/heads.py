"""Heads other than the LM head, as named parts: each reads what it needs from the forward
pass (``Features``), adds its named losses (weighted, possibly scheduled by training progress)
and has its own evaluation statistics. The model keeps them in one registry, ``model.heads``
(an ``nn.ModuleDict`` by name: conviction, T12's auxiliary classifiers), sums the weighted
losses and returns each output; the trainer logs each loss under debug/, each statistic under
final_benchmarks/<name>_<stat> and each head's gradient norm under debug/grad_norm/<group>,
knowing none of them by name."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.stats import auroc, spearman
from runspec.config.schema import ConvictionConfig
from zoo.nn.collect import Collector


@dataclass
class Features:
    """What a head may read: the final normed hidden state, the state fed to the LM head, the
    LM head's weight, and (when a head asked for them) every layer's output."""

    hidden: torch.Tensor
    lm_input: torch.Tensor
    lm_weight: torch.Tensor
    layers: list[torch.Tensor] | None = None


class Head(nn.Module):
    name = ""  # its key in model.heads, its loss's name, the prefix of its statistics
    group = ""  # its parameters' gradient norm: debug/grad_norm/<group>
    shown_in_completion = False  # its output goes with each generated token (conviction does)
    needs_layers = False  # it reads every layer's output (Features.layers)
    training_only = False  # it exists for its loss: no output in evaluation, generation or the KV cache

    def output(self, f: Features) -> torch.Tensor | None:
        raise NotImplementedError

    def add_losses(self, out: torch.Tensor | None, f: Features, targets: torch.Tensor, progress: float | None,
                   collect: Collector) -> None:
        """Its losses into the forward pass's collector: by default one, named as the head."""
        collect.loss(self.name, self.loss(out, f, targets), self.weight(progress))

    def loss(self, out: torch.Tensor, f: Features, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def weight(self, progress: float | None) -> float:
        raise NotImplementedError

    def eval_stats(self, out: np.ndarray, correct: np.ndarray, token_loss: np.ndarray) -> dict[str, float]:
        """Statistics over the validation tokens: the head's outputs, whether the model's top-1
        token was right, and the per-token loss (all flattened, aligned)."""
        return {}


class ConvictionHead(Head):
    """d_model -> 1 on the final normed hidden state. It always has a bias (even with
    model.bias = false): it regresses a target whose mean is far from zero (l2, dot)."""

    name = "conviction"
    group = "conviction_head"
    shown_in_completion = True

    def __init__(self, d_model: int, cfg: ConvictionConfig):
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(d_model, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = hidden.detach() if self.cfg.detach_input else hidden
        return self.proj(x).squeeze(-1).float()

    def output(self, f: Features) -> torch.Tensor:
        return self(f.hidden)

    def loss(self, out: torch.Tensor, f: Features, targets: torch.Tensor) -> torch.Tensor:
        target = conviction_target(self.cfg, f.lm_weight, f.lm_input, targets)
        valid = targets >= 0
        return F.mse_loss(out[valid], target[valid])

    def weight(self, progress: float | None) -> float:
        return self.cfg.weight

    def eval_stats(self, out, correct, token_loss):
        return {"auroc_top1": auroc(out, correct), "spearman_loss": spearman(out, token_loss), "mean": float(out.mean())}


def conviction_target(cfg: ConvictionConfig, lm_weight: torch.Tensor, lm_input: torch.Tensor,
                      targets: torch.Tensor) -> torch.Tensor:
    """How well h_t (the state fed to the LM head) agrees with e_y (the LM-head row of the true
    next token). Gradient routing: e_y carries gradient only with train_lm_head; h_t only with
    train_lm_head and not detach_input (otherwise the target is a constant)."""
    e = lm_weight[targets.clamp_min(0)]
    h = lm_input
    if not cfg.train_lm_head:
        e, h = e.detach(), h.detach()
    elif cfg.detach_input:
        h = h.detach()
    e, h = e.float(), h.float()
    if cfg.target == "cosine":
        return F.cosine_similarity(e, h, dim=-1)
    if cfg.target == "dot":
        return (e * h).sum(-1)
    return (e - h).norm(dim=-1)  # l2
