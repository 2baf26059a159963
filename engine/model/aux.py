"""T12 auxiliary losses (Al-Rfou et al. 2018): intermediate-layer next-token losses dropped on a
schedule, and extra targets (t+2 ...) at every layer that still has a loss.

Training only: evaluation, generation and the KV cache never touch these classifiers.
Everything the active layers need is computed in one batched matmul and one cross-entropy
call, however many layers and targets there are; the final layer's extra targets are a second
matmul (they read the model's final normed state, a different input).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.model.heads import Features, Head
from runspec.config.schema import AuxConfig, ModelConfig
from runspec.run.metrics import AUX_ACTIVE_LAYERS, aux_final_loss, aux_layer_loss
from zoo.nn.collect import Collector


def active_from(layers: list[int], n_layer: int, schedule: str, progress: float) -> int:
    """Index of the first chosen layer still active at ``progress``: layer l (1-indexed) of n
    contributes while progress < l / (2n) (float division: the paper's rule, whose integer
    version drops every loss at step 1). The active layers are always a suffix of the sorted
    choice, so the stacked classifiers are sliced, never gathered."""
    if schedule == "constant":
        return 0
    for i, layer in enumerate(layers):
        if progress < layer / (2 * n_layer):
            return i
    return len(layers)


def shifted_targets(targets: torch.Tensor, extra: int) -> torch.Tensor:
    """(1 + extra, B, T): row j holds the target j + 1 positions ahead (row 0 = next token);
    positions whose target lies past the window are -1 (masked)."""
    rows = [targets]
    for j in range(1, extra + 1):
        pad = targets.new_full((targets.size(0), min(j, targets.size(1))), -1)
        rows.append(torch.cat((targets[:, j:], pad), dim=1))
    return torch.stack(rows)


class AuxHeads(Head):
    """T12's classifiers as one head: training only, reading every layer's output; its loss
    ``aux`` is the weighted sum of every active layer's and target's term."""

    name = "aux"
    group = "aux_heads"
    needs_layers = True
    training_only = True

    def __init__(self, m: ModelConfig, a: AuxConfig, vocab_size: int):
        super().__init__()
        self.cfg, self.n_layer, self.V = a, m.n_layer, vocab_size
        self.layers = a.chosen_layers(m.n_layer)
        self.J = 1 + a.targets  # targets per intermediate layer: t+1 .. t+1+k
        d, A = m.d_model, len(self.layers)
        self.rms = m.norm == "rmsnorm"
        self.gain = nn.Parameter(torch.ones(A, 1, d)) if A else None
        self.shift = nn.Parameter(torch.zeros(A, 1, d)) if A and not self.rms and m.bias else None
        # (A, d, J*V): layer a's classifiers for every target side by side, one matmul for all
        self.inter = nn.Parameter(torch.empty(A, d, self.J * vocab_size)) if A else None
        self.final = nn.Parameter(torch.empty(d, a.targets * vocab_size)) if a.targets else None
        self.param_roles = {"gain": "gain", "shift": "bias", "inter": "head", "final": "head"}
        # the per-target weights: the next token at layer_weight, extra targets times target_weight
        self.register_buffer("inter_weights", torch.tensor([a.layer_weight] + [a.layer_weight * a.target_weight] * a.targets),
                             persistent=False)

    def active(self, progress: float) -> list[int]:
        return self.layers[active_from(self.layers, self.n_layer, self.cfg.schedule, progress):]

    # -- logits (the loss and the tests share them) -------------------------------------------
    def inter_logits(self, layer_out: list[torch.Tensor], start: int) -> torch.Tensor:
        """(A, B, T, J, V) for the chosen layers from index ``start`` on."""
        x = torch.stack([layer_out[layer - 1] for layer in self.layers[start:]])  # (A, B, T, d)
        A, B, T, d = x.shape
        x = x.reshape(A, B * T, d)
        x = F.rms_norm(x, (d,)) if self.rms else F.layer_norm(x, (d,))
        x = x * self.gain[start:]
        if self.shift is not None:
            x = x + self.shift[start:]
        return torch.bmm(x, self.inter[start:]).view(A, B, T, self.J, self.V)

    def final_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, k, V): the final layer's extra targets t+2 .. t+1+k."""
        B, T, d = hidden.shape
        return (hidden.reshape(B * T, d) @ self.final).view(B, T, self.cfg.targets, self.V)

    # -- the losses -----------------------------------------------------------------------------
    def add_losses(self, out: torch.Tensor | None, f: Features, targets: torch.Tensor, progress: float | None,
                   collect: Collector) -> None:
        """One named loss, ``aux`` (the weighted sum, weight 1), and each term as a metric
        ``aux/layer3_t1_loss`` ... at log steps, with ``aux/active_layers``. Without a training
        progress (a plain forward with targets) there is no schedule to follow: no loss."""
        if progress is None:
            return
        layer_out, hidden = f.layers, f.hidden
        a = self.cfg
        start = active_from(self.layers, self.n_layer, a.schedule, progress)
        ys = shifted_targets(targets, a.targets)  # (J, B, T)
        counts = (ys >= 0).flatten(1).sum(1).clamp_min(1)  # valid targets per row
        total = None
        if start < len(self.layers) and a.layer_weight > 0:
            logits = self.inter_logits(layer_out, start)  # (A, B, T, J, V)
            A = logits.size(0)
            y = ys.permute(1, 2, 0).unsqueeze(0).expand(A, -1, -1, -1)  # (A, B, T, J)
            nll = F.cross_entropy(logits.reshape(-1, self.V).float(), y.reshape(-1), ignore_index=-1,
                                  reduction="none").view(A, -1, self.J)
            per = nll.sum(1) / counts  # (A, J): each layer's and target's mean loss
            total = (per * self.inter_weights).sum()
            if collect.want_metrics:
                for i, layer in enumerate(self.layers[start:]):
                    for j in range(self.J):
                        collect.metric(aux_layer_loss(layer, j + 1), per[i, j].detach())
        if a.targets and a.target_weight > 0:
            logits = self.final_logits(hidden)  # (B, T, k, V)
            y = ys[1:].permute(1, 2, 0)  # (B, T, k)
            nll = F.cross_entropy(logits.reshape(-1, self.V).float(), y.reshape(-1), ignore_index=-1,
                                  reduction="none").view(-1, a.targets)
            per = nll.sum(0) / counts[1:]
            term = per.sum() * a.target_weight
            total = term if total is None else total + term
            if collect.want_metrics:
                for j in range(a.targets):
                    collect.metric(aux_final_loss(j + 2), per[j].detach())
        if collect.want_metrics:
            collect.metric(AUX_ACTIVE_LAYERS, torch.tensor(float(len(self.layers) - start)))
        if total is not None:
            collect.loss("aux", total, 1.0)
