"""A run's logged series at full resolution, read straight from events.jsonl (torch-free):
every name's value at every step it was logged, and the engine's wall clock at each step
(summed over launches, so a resumed run's time excludes the time it was stopped). Feeds
``cockpit metrics`` (a summary table and CSV/parquet files) and the baseline comparison's
equal-tokens and equal-wall-clock figures."""

from __future__ import annotations

import csv
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from cockpit.format import number
from runspec.run import events
from runspec.run.metrics import STEP_MS, TOKENS, info

WALL = "wall_s"  # the column of engine seconds in exported files
SCALAR_KINDS = (events.STEP, events.EVAL, events.FINAL)


@dataclass
class RunSeries:
    run: str
    values: dict[str, dict[int, float]] = field(default_factory=dict)  # name -> step -> value
    wall: dict[int, float] = field(default_factory=dict)  # step -> engine seconds when it was logged
    # step -> training seconds: each log interval's step time x its steps, so evaluations,
    # checkpoints and time stopped do not count (the clock of "at equal wall clock")
    train_s: dict[int, float] = field(default_factory=dict)

    def points(self, name: str) -> tuple[list[int], list[float]]:
        steps = sorted(self.values.get(name, {}))
        return steps, [self.values[name][s] for s in steps]

    @property
    def names(self) -> list[str]:
        return sorted(self.values)

    def tokens_at(self) -> dict[int, float]:
        """step -> tokens trained, where the engine logged it."""
        return dict(self.values.get(TOKENS, {}))


def read_series(rd) -> RunSeries:
    """Every scalar of a run. A step logged twice (the steps a resumed run repeats after its
    checkpoint) keeps the later value: the trajectory the run actually continued on."""
    out = RunSeries(rd.id)
    segment = (0.0, 0.0)  # (this launch's first event time, wall seconds before it)
    wall = 0.0
    clock: dict[int, float] = {0: 0.0}
    last = 0  # the newest step in clock
    for ev in events.read_events(rd.events):
        if ev.kind == events.START or not segment[0]:
            segment = (ev.time, wall)
        wall = segment[1] + max(0.0, ev.time - segment[0])
        if ev.kind not in SCALAR_KINDS or ev.step is None:
            continue
        out.wall[ev.step] = wall
        step_ms = ev.metrics.get(STEP_MS) if ev.kind == events.STEP else None
        if isinstance(step_ms, (int, float)) and not isinstance(step_ms, bool):
            if ev.step <= last:  # a resumed run repeats the steps after its checkpoint
                clock = {k: v for k, v in clock.items() if k < ev.step}
                last = max(clock)
            clock[ev.step] = clock[last] + step_ms / 1000 * (ev.step - last)
            last = ev.step
        for name, value in ev.metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.values.setdefault(name, {})[ev.step] = float(value)
    out.train_s = {k: v for k, v in clock.items() if k}
    return out


def select(rs: RunSeries, patterns: list[str] | None) -> list[str]:
    """The names matching each pattern (exact, or a glob such as 'debug/grad_norm/*'), in the
    order asked; every name when none are given. An unmatched pattern is a ValueError that
    names what the run has."""
    if not patterns:
        return rs.names
    chosen: list[str] = []
    for pattern in patterns:
        hits = [n for n in rs.names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            leaf, space = pattern.rsplit("/", 1)[-1].strip("*"), pattern.split("/", 1)[0] + "/"
            near = ([n for n in rs.names if leaf and leaf in n] + [n for n in rs.names if n.startswith(space)]
                    or rs.names)[:6]
            raise ValueError(f"--series {pattern!r}: {rs.run} logged no such series"
                             + (f"; it has e.g. {', '.join(near)}" if rs.names else " (it has logged none yet)"))
        chosen += [n for n in hits if n not in chosen]
    return chosen


def value_at(steps: list[int], values: list[float], step: int) -> tuple[int, float] | None:
    """The value logged at ``step``, else the last one before it (step, value); None before any."""
    best = None
    for s, v in zip(steps, values):
        if s > step:
            break
        best = (s, v)
    return best


def summary_table(rs: RunSeries, names: list[str], at: int | None = None) -> tuple[list[str], list[list[str]]]:
    """(header, rows): per series its point count, first, last, min and max (with their steps)
    and, with ``at``, its value at that step."""
    header = ["series", "points", "first", "last", "min", "at step", "max", "at step"]
    if at is not None:
        header.append(f"at {at}")
    rows = []
    for name in names:
        steps, values = rs.points(name)
        if not steps:
            continue
        fmt = info(name).fmt
        lo = min(range(len(values)), key=values.__getitem__)
        hi = max(range(len(values)), key=values.__getitem__)
        row = [name, str(len(steps)), number(values[0], fmt), number(values[-1], fmt),
               number(values[lo], fmt), str(steps[lo]), number(values[hi], fmt), str(steps[hi])]
        if at is not None:
            hit = value_at(steps, values, at)
            row.append("-" if hit is None else number(hit[1], fmt) + ("" if hit[0] == at else f" (step {hit[0]})"))
        rows.append(row)
    return header, rows


def wide_rows(rs: RunSeries, names: list[str]) -> tuple[list[str], list[list[float | int | None]]]:
    """One row per logged step: step, wall seconds, then each series (None where it was not logged)."""
    steps = sorted({s for n in names for s in rs.values.get(n, {})})
    header = ["step", WALL, *names]
    rows = [[s, rs.wall.get(s), *(rs.values.get(n, {}).get(s) for n in names)] for s in steps]
    return header, rows


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([["" if v is None else v for v in r] for r in rows])


def write_parquet(path: Path, header: list[str], rows: list[list]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {h: [r[i] for r in rows] for i, h in enumerate(header)}
    types = {h: pa.int64() if h == "step" else pa.float64() for h in header}
    pq.write_table(pa.table({h: pa.array(v, type=types[h]) for h, v in columns.items()}), path)
