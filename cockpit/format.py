"""How the cockpit writes numbers, sizes and durations: one place, so the CLI, the TUI, compare
and findings print the same figure the same way. "-" is a missing value everywhere."""

from __future__ import annotations

import math

MISSING = "-"


def human(x: float | None) -> str:
    """Three significant digits with k/M/G/T (parameters, tokens, FLOPs in tables and fits)."""
    if x is None:
        return MISSING
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.3g}"


def params_short(n: int | None) -> str:
    """A parameter count in a narrow column: one decimal with K/M/B; empty when unknown."""
    if not n:
        return ""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def nbytes(n: int | None) -> str:
    """A size on disk in decimal units (1 KB = 1000 B)."""
    if n is None:
        return MISSING
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return str(n)


def number(v: float | None, spec: str = ".4f") -> str:
    """``format(v, spec)``, or "-" for a missing or non-finite value."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return MISSING
    return format(v, spec)


def clock(seconds: float | None) -> str:
    """m:ss below an hour, h:mm:ss above it; "-" for none."""
    if not seconds:
        return MISSING
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def hms(seconds: float | None) -> str:
    """Always h:mm:ss (an ETA column whose width must not change); "?" when unknown."""
    if seconds is None:
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def ago(seconds: float) -> str:
    """'3 h ago', '2 d ago', 'just now': how long since something happened, roughly."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"
