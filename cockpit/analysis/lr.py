"""The best learning rate per model size: a parabola of final loss in log10(lr) per size, and
how its minimum moves with width (a power law across sizes). Torch-free."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class SizeLR:
    params: int  # the size's total parameter count (its key)
    width: int | None  # d_model
    lrs: list[float]
    losses: list[float]
    best_tried: float  # the lr with the lowest loss among those trained
    lr_opt: float  # the parabola's minimum; NaN when there is none
    loss_opt: float
    why: str  # "" when lr_opt is trustworthy, else why it is not used

    @property
    def usable(self) -> bool:
        return not self.why


@dataclass
class LRFit:
    sizes: list[SizeLR]
    exponent: float  # lr_opt ∝ width^exponent (NaN with fewer than 2 usable sizes of different widths)
    log_c: float

    def predict(self, width: float) -> float:
        return math.exp(self.log_c + self.exponent * math.log(width)) if math.isfinite(self.exponent) else math.nan


def fit_size(params: int, width: int | None, lrs, losses) -> SizeLR:
    pairs = sorted((float(a), float(b)) for a, b in zip(lrs, losses))
    lrs, losses = [a for a, _ in pairs], [b for _, b in pairs]
    best = lrs[int(np.argmin(losses))]
    distinct = sorted(set(lrs))
    if len(distinct) < 3:
        return SizeLR(params, width, lrs, losses, best, math.nan, min(losses),
                      f"{len(distinct)} learning rate{'s' if len(distinct) != 1 else ''}: a minimum needs 3 or more")
    x = np.log10(lrs)
    c2, c1, c0 = np.polyfit(x, losses, 2)
    if c2 <= 0:
        return SizeLR(params, width, lrs, losses, best, math.nan, min(losses),
                      "loss is not bowl-shaped in log lr (no minimum)")
    x_opt = -c1 / (2 * c2)
    lr_opt = float(10 ** x_opt)
    why = ""
    if not distinct[0] <= lr_opt <= distinct[-1]:
        side = "below" if lr_opt < distinct[0] else "above"
        why = f"the minimum ({lr_opt:.2e}) is {side} the rates tried: extend the range {side}"
    return SizeLR(params, width, lrs, losses, best, lr_opt, float(np.polyval((c2, c1, c0), x_opt)), why)


def fit_lr(points) -> LRFit:
    """points: objects with .params_total, .width, .lr, .loss (analysis.points.Point)."""
    groups: dict[int, list] = {}
    for p in points:
        if p.lr is not None:
            groups.setdefault(p.params_total, []).append(p)
    sizes = [fit_size(n, g[0].width, [p.lr for p in g], [p.loss for p in g]) for n, g in sorted(groups.items())]
    used = [s for s in sizes if s.usable and s.width]
    exponent = log_c = math.nan
    if len({s.width for s in used}) >= 2:
        exponent, log_c = (float(v) for v in np.polyfit(np.log([s.width for s in used]),
                                                        np.log([s.lr_opt for s in used]), 1))
    return LRFit(sizes, exponent, log_c)
