"""Mean ± spread over seeds, and whether a difference between two groups is more than the seeds
move (torch-free; scipy's t distribution). A difference is *within the spread* when its 95%
confidence interval contains zero: a paired t interval when both groups have the same seeds
(seed s of one is paired with seed s of the other: they share the data order), Welch's
interval otherwise. With one run on either side there is no spread to judge by."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

LEVEL = 0.95


@dataclass(frozen=True)
class Spread:
    mean: float
    std: float | None  # sample standard deviation (n - 1); None for one run
    n: int

    def format(self, fmt: str = ".4f") -> str:
        if self.std is None:
            return format(self.mean, fmt)
        return f"{format(self.mean, fmt)} ± {format(self.std, fmt)}"


def spread(values: list[float]) -> Spread | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None
    return Spread(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None, len(vals))


@dataclass(frozen=True)
class Delta:
    diff: float  # mean(group) - mean(baseline)
    half_width: float | None  # of the 95% confidence interval; None without seeds on both sides
    test: str  # "paired", "welch" or "" (no test)

    @property
    def within(self) -> bool | None:
        """True: the interval contains zero (the seeds could move this much); None: no test."""
        return None if self.half_width is None else abs(self.diff) <= self.half_width

    def scaled(self, factor: float) -> "Delta":
        return Delta(self.diff * factor, None if self.half_width is None else self.half_width * factor, self.test)

    def format(self, fmt: str = "+.4f", unit: str = "") -> str:
        text = format(self.diff, fmt) + unit
        if self.half_width is not None:
            text += f" ±{format(self.half_width, fmt.lstrip('+'))}{unit}"
        return text + {True: " ~", False: " *", None: ""}[self.within]


LEGEND = ("Δ: mean of the column minus mean of the baseline; ± the half-width of its 95% confidence interval "
          "(paired t over matching seeds, Welch's t otherwise); ~ within the seed spread (the interval contains 0), "
          "* outside it; no mark: one run on a side, no spread to judge by")


def delta(baseline: dict[int, float], other: dict[int, float]) -> Delta | None:
    """Δ of two groups' values, each keyed by seed."""
    from scipy import stats

    b = {k: v for k, v in baseline.items() if v is not None and math.isfinite(v)}
    o = {k: v for k, v in other.items() if v is not None and math.isfinite(v)}
    if not b or not o:
        return None
    diff = statistics.fmean(o.values()) - statistics.fmean(b.values())
    if len(b) < 2 or len(o) < 2:
        return Delta(diff, None, "")
    if set(b) == set(o):
        d = [o[k] - b[k] for k in sorted(b)]
        sd = statistics.stdev(d)
        se = sd / math.sqrt(len(d))
        t = stats.t.ppf(0.5 + LEVEL / 2, len(d) - 1)
        return Delta(statistics.fmean(d), t * se, "paired")
    vb, vo = statistics.variance(b.values()) / len(b), statistics.variance(o.values()) / len(o)
    se = math.sqrt(vb + vo)
    if se == 0:
        return Delta(diff, 0.0, "welch")
    df = (vb + vo) ** 2 / (vb ** 2 / (len(b) - 1) + vo ** 2 / (len(o) - 1))
    return Delta(diff, stats.t.ppf(0.5 + LEVEL / 2, df) * se, "welch")
