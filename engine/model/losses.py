"""The next-token distribution and its loss: softmax cross-entropy, or StableMax (Prieto et
al. 2025): s(x) = x + 1 for x >= 0 and 1/(1 - x) below, p_i = s(x_i) / Σ_j s(x_j), computed in
fp32 (float64 would be safer still, at twice the memory). Targets of -1 are ignored."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def stablemax_s(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x + 1.0, 1.0 / (1.0 - torch.clamp(x, max=0.0)))


def stablemax(logits: torch.Tensor) -> torch.Tensor:
    s = stablemax_s(logits.float())
    return s / s.sum(dim=-1, keepdim=True)


def token_losses(logits: torch.Tensor, targets: torch.Tensor, output: str = "softmax") -> torch.Tensor:
    """Per-token negative log-likelihood (fp32), same shape as ``targets``; 0 where it is -1."""
    flat, y = logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1)
    if output == "stablemax":
        s = stablemax_s(flat)
        picked = s.gather(1, y.clamp_min(0).unsqueeze(1)).squeeze(1)
        nll = torch.log(s.sum(-1)) - torch.log(picked)
        nll = nll.masked_fill(y < 0, 0.0)
    else:
        nll = F.cross_entropy(flat, y, ignore_index=-1, reduction="none")
    return nll.view(targets.shape)


def mean_loss(logits: torch.Tensor, targets: torch.Tensor, output: str = "softmax") -> torch.Tensor:
    """The mean over targets that are not -1 (no host sync)."""
    if output == "softmax":
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
    valid = (targets >= 0).float()
    return (token_losses(logits, targets, output) * valid).sum() / valid.sum().clamp_min(1.0)


def next_token_probs(logits: torch.Tensor, output: str = "softmax") -> torch.Tensor:
    return stablemax(logits) if output == "stablemax" else torch.softmax(logits.float(), dim=-1)
