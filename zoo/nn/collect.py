"""Named losses and metrics gathered during one forward pass: a mixture of experts adds its
balance loss in every layer, a head its own loss, and the model returns them by name, so the
trainer weights, sums and logs them without knowing any of them."""

from __future__ import annotations

import torch


class Collector:
    def __init__(self, metrics: bool = False):
        self.want_metrics = metrics
        self._losses: dict[str, list] = {}  # name -> [sum, count, weight]
        self._metrics: dict[str, list] = {}

    def loss(self, name: str, value: torch.Tensor, weight: float) -> None:
        """A loss term; several of the same name (one per layer) are averaged."""
        entry = self._losses.get(name)
        if entry is None:  # (no arithmetic for the common single term: every op costs in the hot loop)
            self._losses[name] = [value, 1, weight]
        else:
            entry[0] = entry[0] + value
            entry[1] += 1

    def metric(self, name: str, value: torch.Tensor) -> None:
        if self.want_metrics:
            entry = self._metrics.setdefault(name, [0.0, 0])
            entry[0] = entry[0] + value.detach().float()
            entry[1] += 1

    def losses(self) -> dict[str, torch.Tensor]:
        return {k: s / n if n > 1 else s for k, (s, n, _) in self._losses.items()}

    def weights(self) -> dict[str, float]:
        return {k: w for k, (_, _, w) in self._losses.items()}

    def metrics(self) -> dict[str, torch.Tensor]:
        return {k: s / n for k, (s, n) in self._metrics.items()}
