"""Charts for the terminal (plotext), for analyze and compare: no colours (they must survive a
pipe, a log file and `--md`), a distinct marker per series, the legend below the plot rather
than over the data, and tick labels a person reads (1e12, 3.2k, 0.25)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MARKERS = ("•", "+", "x", "o", "*", "#", "@", "%", "&", "$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Series:
    label: str
    x: list[float]
    y: list[float]
    line: bool = True  # a line through the points, or markers only


def tick_label(v: float, digits: int = 3) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        m, e = f"{v:.{digits - 2}e}".split("e")
        m = m.rstrip("0").rstrip(".") if "." in m else m
        return f"{m}e{int(e)}"
    if a >= 1000:
        return f"{v / 1000:.{digits}g}k"
    return f"{v:.{digits}g}"


def tick_labels(values: list[float]) -> list[str]:
    """Labels for ticks, with as many digits as it takes to tell neighbours apart (a narrow
    range, a learning rate decaying from 1e-2 to 9.9e-3, printed '0.01' twice)."""
    for digits in range(3, 8):
        labels = [tick_label(v, digits) for v in values]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def ticks(lo: float, hi: float, log: bool, count: int = 5) -> list[float]:
    if lo == hi:
        return [lo]
    if log:
        a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        step = max(1, math.ceil((b - a) / count))
        decades = [10.0 ** k for k in range(a, b + 1, step) if lo <= 10.0 ** k <= hi]
        if len(decades) >= 2:
            return decades
        # less than a decade: spread ticks evenly in log space
        return [lo * (hi / lo) ** (i / (count - 1)) for i in range(count)]
    # round numbers (0, 100, 200 ...; 0.25, 0.5 ...) at a step of 1, 2, 2.5 or 5 times a power of ten
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out = [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]
    return [round(v, 12) for v in out] if len(out) >= 2 else [lo, hi]


def chart(series: list[Series], *, title: str = "", xlabel: str = "", ylabel: str = "", xlog: bool = False,
          ylog: bool = False, width: int = 72, height: int = 18) -> str:
    """The chart as plain text: the plot, then one legend line per series."""
    import plotext as plt

    series = [s for s in series if s.x]
    if not series:
        return "(nothing to plot)"
    plt.clf()
    plt.plotsize(width, height)
    plt.theme("clear")
    if xlog:
        plt.xscale("log")
    if ylog:
        plt.yscale("log")
    xs = [v for s in series for v in s.x]
    ys = [v for s in series for v in s.y]
    for i, s in enumerate(series):
        m = MARKERS[i % len(MARKERS)]
        (plt.plot if s.line and len(s.x) > 1 else plt.scatter)(s.x, s.y, marker=m)
    xt = ticks(min(xs), max(xs), xlog)
    yt = ticks(min(ys), max(ys), ylog)
    plt.xticks(xt, tick_labels(xt))
    plt.yticks(yt, tick_labels(yt))
    if title:
        plt.title(title)
    if xlabel or ylabel:
        plt.xlabel(xlabel + (" (log)" if xlog and xlabel else ""))
        plt.ylabel(ylabel + (" (log)" if ylog and ylabel else ""))
    text = _ANSI.sub("", plt.build()).rstrip()
    legend = [f"  {MARKERS[i % len(MARKERS)]} {s.label}" for i, s in enumerate(series)]
    return "\n".join([*(line.rstrip() for line in text.splitlines()), *legend])
