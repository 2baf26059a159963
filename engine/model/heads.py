"""Heads other than the LM head: the conviction head and its training target."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import ConvictionConfig


class ConvictionHead(nn.Module):
    """d_model -> 1 on the final normed hidden state. It always has a bias (even with
    model.bias = false): it regresses a target whose mean is far from zero (l2, dot)."""

    def __init__(self, d_model: int, cfg: ConvictionConfig):
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(d_model, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = hidden.detach() if self.cfg.detach_input else hidden
        return self.proj(x).squeeze(-1).float()


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
