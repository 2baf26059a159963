"""Runs side by side (torch-free): the config keys that differ, sizes, tokens, wall clock,
throughput and every final figure, runs that differ only in their seed as one column (mean ±
standard deviation over the seeds), a baseline column with Δs at equal steps, equal tokens and
equal training time, and the curves to overlay (a group's mean, with its spread as a band).
Shared by `cockpit compare`, `cockpit findings`, `cockpit ablate` and the TUI's compare tab."""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cockpit import seeds
from cockpit.analysis.spread import LEGEND, delta, spread
from cockpit.format import clock, human
from runspec.run.metrics import FINAL_LOSS, VAL_LOSS, final_figures, info, label_of
from runspec.run.rundir import RUNNING

# keys that differ between any two runs without saying anything about them
NOISE = ("log.run_name", "log.wandb_name", "data.cache_dir")
AXES = ("steps", "tokens", "train_s")  # the x axes a baseline Δ is taken at


@dataclass
class ValCurve:
    """The validation loss (the running validation, ending in the final pass) against three x axes."""

    steps: list[float]
    tokens: list[float] | None  # tokens trained at each of those steps (None: not logged)
    train_s: list[float] | None  # training seconds (evaluation and checkpoints excluded)
    loss: list[float]

    def axis(self, name: str) -> list[float] | None:
        return {"steps": self.steps, "tokens": self.tokens, "train_s": self.train_s}[name]

    def at(self, name: str, x: float) -> float | None:
        """The loss at x on an axis, interpolated between evaluations; None outside the curve."""
        xs = self.axis(name)
        if not xs or x < xs[0] - 1e-9 or x > xs[-1] * (1 + 1e-9) + 1e-9:
            return None
        return float(np.interp(x, xs, self.loss))


@dataclass
class Summary:
    run: str
    status: str
    config: dict[str, Any]  # flattened resolved config (dotted keys)
    params: int | None
    params_non_embedding: int | None
    tokens: int | None
    wall_s: float
    tokens_per_s: float | None
    final: dict[str, float]
    curves: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    sweep: str | None = None
    val: ValCurve | None = None

    @property
    def seed(self) -> int | None:
        s = self.config.get(seeds.SEED_KEY)
        return s if isinstance(s, int) else None


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def val_curve(rs) -> ValCurve | None:
    """A run's validation curve from its full-resolution series (cockpit.analysis.series)."""
    from runspec.run.metrics import TOKENS

    points = dict(rs.values.get(VAL_LOSS, {}))
    points.update(rs.values.get(FINAL_LOSS, {}))  # the final pass is the curve's last point
    if not points:
        return None
    steps = sorted(points)

    def along(series: dict[int, float]) -> list[float] | None:
        if not series:
            return None
        xs = [0, *sorted(series)]
        return [float(v) for v in np.interp(steps, xs, [0.0, *(series[k] for k in xs[1:])])]

    return ValCurve([float(s) for s in steps], along(rs.values.get(TOKENS, {})), along(rs.train_s),
                    [points[s] for s in steps])


def summarize(rd) -> Summary:
    from cockpit.analysis.series import read_series
    from cockpit.history import RunHistory
    from cockpit.runs import listed, run_config
    from cockpit.summary import summarize
    from runspec.config.schema import to_dict

    h = RunHistory(rd, cap=4096)
    cfg = run_config(rd)
    s = summarize(listed(rd), cfg, h)  # an unreadable state file is 'broken', never hides the run's numbers
    config = {k: v for k, v in flatten(to_dict(cfg)).items() if k not in NOISE} if cfg is not None else {}
    curves = {name: s.points() for name, s in h.series.items()}
    final_loss = h.final.get(FINAL_LOSS)
    if final_loss is not None and h.step:
        # the final evaluation is the curve's last point (periodic evals may be rarer than the run is long)
        xs, ys = curves.get(VAL_LOSS, ([], []))
        if not xs or xs[-1] < h.step:
            curves[VAL_LOSS] = ([*xs, float(h.step)], [*ys, float(final_loss)])
    return Summary(rd.id, s.status, config, s.params, s.params_non_embedding, s.tokens, s.wall_s, s.median_tok_s,
                   dict(h.final), curves, rd.read_meta().sweep, val_curve(read_series(rd)))


def _signature(rd) -> tuple:
    """What summarize() reads, by size and modification time (None where a file is missing)."""
    out = []
    for f in (rd.events, rd.state_file, rd.meta_file, rd.resolved):
        try:
            st = f.stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


class Summaries:
    """summarize() for a face that asks again every second (the Compare tab): a run whose files
    are unchanged since the last call is not read again, so a finished run costs a few stat()s
    rather than two passes over its events. A running run is always read."""

    def __init__(self) -> None:
        self._memo: dict[Any, tuple[tuple, Summary]] = {}

    def get(self, rd) -> Summary:
        key = _signature(rd)
        hit = self._memo.get(rd.path)
        if hit is not None and hit[0] == key:
            return hit[1]
        s = summarize(rd)
        if s.status != RUNNING:  # a live run's wall clock moves between its events
            self._memo[rd.path] = (key, s)
        return s

    def keep(self, rds) -> None:
        """Forget every run but these (the picks changed)."""
        paths = {rd.path for rd in rds}
        self._memo = {p: v for p, v in self._memo.items() if p in paths}


def differing(configs: list[dict[str, Any]]) -> list[str]:
    """Flattened config keys whose values are not the same in every config (a key one lacks differs)."""
    keys = sorted({k for c in configs for k in c})
    missing = object()
    return [k for k in keys if len({repr(c.get(k, missing)) for c in configs}) > 1]


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]" if v else "[]"
    return "-" if v is None else str(v)


def short_names(ids: list[str]) -> tuple[list[str], str]:
    """Run ids without their creation stamps (-YYYYMMDD-HHMMSS) where the names stay unique,
    and the stamp they all share ('' when they do not share one)."""
    m = re.search(r"-\d{8}-\d{6}$", ids[0]) if ids else None
    if m and len(ids) > 1 and all(i.endswith(m.group()) for i in ids):
        return [i[: -len(m.group())] for i in ids], m.group()
    # stamps that differ go too while the names alone still tell the runs apart
    bare = [re.sub(r"-\d{8}-\d{6}$", "", i) for i in ids]
    return (bare if len(set(bare)) == len(bare) else list(ids)), ""


# -- columns: a run, or the runs that differ only in their seed ---------------------------
@dataclass
class Column:
    label: str
    runs: list[Summary]

    @property
    def n(self) -> int:
        return len(self.runs)

    def by_seed(self, value) -> dict[int, float]:
        """value(run) keyed by seed (by position when seeds repeat: then nothing is paired)."""
        keys = [s.seed for s in self.runs]
        if None in keys or len(set(keys)) != len(keys):
            keys = [-1 - i for i in range(len(self.runs))]
        return {k: v for k, s in zip(keys, self.runs) if (v := value(s)) is not None}


def columns(summaries: list[Summary], grouped: bool = True) -> list[Column]:
    """One column per seed group (``grouped``) or per run, in the order they first appear."""
    groups = seeds.groups_of(summaries, lambda s: s.config, NOISE) if grouped else [[s] for s in summaries]
    short = dict(zip([s.run for s in summaries], short_names([s.run for s in summaries])[0]))
    out = []
    for g in groups:
        label = short[g[0].run] if len(g) == 1 else f"{seeds.group_label([short[s.run] for s in g])} ×{len(g)}"
        out.append(Column(label, g))
    return out


def ordered_columns(summaries: list[Summary], baseline: str | None = None, grouped: bool = True) -> list[Column]:
    """The columns as every view shows them: the baseline's first (ValueError: no such column)."""
    cols = columns(summaries, grouped)
    if baseline is None:
        return cols
    i = find_column(cols, baseline)
    return [cols[i], *cols[:i], *cols[i + 1:]]


def find_column(cols: list[Column], ref: str) -> int:
    """The column a --baseline names: a run in it (id or unique prefix) or its label; ValueError otherwise."""
    for i, c in enumerate(cols):
        if c.label == ref or c.label.split(" ×")[0] == ref or any(s.run == ref for s in c.runs):
            return i
    hits = {i for i, c in enumerate(cols) for s in c.runs if s.run.startswith(ref)}
    if len(hits) == 1:
        return hits.pop()
    names = ", ".join(c.label for c in cols)
    raise ValueError(f"--baseline {ref!r}: {'names several columns' if hits else 'is not among the runs compared'}"
                     f" ({names}); give a run id or a column's name")


def _status(c: Column) -> str:
    counts = collections.Counter(s.status for s in c.runs)
    if len(counts) == 1:
        status, n = counts.popitem()
        return status if n == 1 else f"{status} ×{n}"
    return ", ".join(f"{n} {st}" for st, n in counts.most_common())


def _cell(c: Column, value, fmt: str) -> str:
    sp = spread([v for s in c.runs if (v := value(s)) is not None])
    return "-" if sp is None else sp.format(fmt)


def _common_x(cols: list[Column], axis: str) -> float | None:
    """The furthest x every run reached on an axis (the point all Δs are taken at)."""
    ends = []
    for c in cols:  # (runs without a curve yet, queued ones, are left out: their cells read '-')
        for s in c.runs:
            xs = s.val.axis(axis) if s.val is not None else None
            if s.val is not None and not xs:
                return None  # a run that did not log this axis: no common point
            if xs:
                ends.append(xs[-1])
    return min(ends) if ends else None


AXIS_LABEL = {"steps": lambda x: f"step {x:,.0f}", "tokens": lambda x: f"{human(x)} tokens",
              "train_s": lambda x: f"{x:.1f} s training" if x < 60 else f"{clock(x)} training"}
AXIS_NAME = {"steps": "equal steps", "tokens": "equal tokens", "train_s": "equal wall clock"}


def baseline_rows(cols: list[Column], base: int) -> list[list[str]]:
    """Δ against the baseline column: validation loss at equal steps, tokens and training time,
    tokens/s and parameters (relative), each marked against the seed spread."""
    rows = []
    b = cols[base]
    for axis in AXES:
        x = _common_x(cols, axis)
        if x is None:
            continue
        at = lambda s: s.val.at(axis, x)  # noqa: E731
        row = [f"Δ val loss, {AXIS_NAME[axis]} ({AXIS_LABEL[axis](x)})"]
        for i, c in enumerate(cols):
            d = delta(b.by_seed(at), c.by_seed(at)) if i != base else None
            row.append("baseline" if i == base else ("-" if d is None else d.format()))
        rows.append(row)
    row = ["Δ tokens/s"]
    base_rate = spread(list(b.by_seed(lambda s: s.tokens_per_s).values()))
    for i, c in enumerate(cols):
        d = delta(b.by_seed(lambda s: s.tokens_per_s), c.by_seed(lambda s: s.tokens_per_s)) if i != base else None
        if i == base:
            row.append("baseline")
        elif d is None or base_rate is None or not base_rate.mean:
            row.append("-")
        else:  # as a share of the baseline's throughput
            row.append(d.scaled(100 / base_rate.mean).format("+.1f", "%"))
    rows.append(row)
    bp = b.runs[0].params

    def params_delta(c: Column) -> str:
        p = c.runs[0].params
        return "-" if not bp or p is None else f"{100 * (p - bp) / bp:+.1f}%"

    rows.append(["Δ params", *("baseline" if i == base else params_delta(c) for i, c in enumerate(cols))])
    return rows


def table(summaries: list[Summary], baseline: str | None = None, grouped: bool = True
          ) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one column per run or seed group (the baseline's first), one row per
    differing key and per figure, then the Δs against the baseline when one is named."""
    cols = ordered_columns(summaries, baseline, grouped)
    base = 0 if baseline is not None else None
    header = ["", *(c.label for c in cols)]
    rows = []
    for k in differing([s.config for s in summaries]):
        if k == seeds.SEED_KEY:
            rows.append([k, *(",".join(_value(s.config.get(k)) for s in c.runs) for c in cols)])
        elif len(cols) > 1 or not grouped:
            rows.append([k, *(_value(c.runs[0].config.get(k)) for c in cols)])
    if any(c.n > 1 for c in cols):
        rows.append(["runs (seeds)", *(str(c.n) for c in cols)])
    rows.append(["status", *(_status(c) for c in cols)])
    rows.append(["params", *(human(c.runs[0].params) for c in cols)])
    rows.append(["params (non-emb.)", *(human(c.runs[0].params_non_embedding) for c in cols)])
    rows.append(["tokens", *(_cell(c, lambda s: s.tokens, ",.0f") if len({s.tokens for s in c.runs}) > 1
                             else human(c.runs[0].tokens) for c in cols)])
    rows.append(["wall clock", *(clock(sp.mean) if (sp := spread([s.wall_s for s in c.runs if s.wall_s])) else "-"
                                 for c in cols)])
    rows.append(["tokens/s", *(_cell(c, lambda s: s.tokens_per_s, ",.0f") for c in cols)])
    for key in final_figures({k for s in summaries for k in s.final}):
        rows.append([label_of(key), *(_cell(c, lambda s, k=key: s.final.get(k), info(key).fmt) for c in cols)])
    if not any(s.final for s in summaries) or any(not s.final for s in summaries):
        rows.append(["last val loss", *(_cell(c, _last_val, ".4f") for c in cols)])
    if base is not None:
        rows += baseline_rows(cols, base)
    return header, rows


def _last_val(s: Summary) -> float | None:
    ys = s.curves.get(VAL_LOSS, ([], []))[1]
    return ys[-1] if ys else None


def legend(summaries: list[Summary], baseline: str | None) -> str:
    """What the marks in a table mean ('' when it has none)."""
    return LEGEND if baseline is not None else (
        "a column of several runs: mean ± standard deviation over its seeds" if any(
            c.n > 1 for c in columns(summaries)) else "")


def markdown(header: list[str], rows: list[list[str]]) -> str:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(c) for c in header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def plain(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join(fmt(r).rstrip() for r in [header, *rows])


# -- curves -------------------------------------------------------------------------------
def ema(ys: list[float], alpha: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased at the start (so the
    first points are not pulled towards zero). alpha 0: the raw curve."""
    if not alpha:
        return list(ys)
    out, acc = [], 0.0
    for i, y in enumerate(ys, 1):
        acc = alpha * acc + (1 - alpha) * y
        out.append(acc / (1 - alpha ** i))
    return out


@dataclass
class Band:
    """A column's curve: its mean over seeds and, with several runs, mean ± one standard deviation."""

    label: str
    x: list[float]
    mean: list[float]
    low: list[float] | None = None
    high: list[float] | None = None


def bands(summaries: list[Summary], metric: str, smooth: float = 0.0, grouped: bool = True,
          baseline: str | None = None) -> list[Band]:
    out = []
    for c in ordered_columns(summaries, baseline, grouped):
        curves = [(xs, ema(ys, smooth)) for s in c.runs if (xs := s.curves.get(metric, ([], []))[0])
                  for ys in [s.curves[metric][1]]]
        if not curves:
            continue
        if len(curves) == 1:
            out.append(Band(c.label, list(curves[0][0]), curves[0][1]))
            continue
        # on the steps of the run that logged the fewest, within the range every run covers
        end = min(xs[-1] for xs, _ in curves)
        grid = [x for x in min((xs for xs, _ in curves), key=len) if x <= end]
        stack = np.array([np.interp(grid, xs, ys) for xs, ys in curves])
        mean, std = stack.mean(0), stack.std(0, ddof=1)
        out.append(Band(c.label, grid, mean.tolist(), (mean - std).tolist(), (mean + std).tolist()))
    return out


def overlay_series(summaries, metric: str, smooth: float = 0.0, grouped: bool = True, baseline: str | None = None):
    """The terminal chart's lines: each column's (mean) curve."""
    from cockpit.analysis.termplot import Series

    return [Series(b.label + (" (mean)" if b.low is not None else ""), b.x, b.mean)
            for b in bands(summaries, metric, smooth, grouped, baseline)]


def check_metric(summaries, metric: str) -> str | None:
    """None, or the one-line reason the metric cannot be drawn."""
    if any(metric in s.curves for s in summaries):
        return None
    names = sorted({n for s in summaries for n in s.curves})
    near = [n for n in names if metric.split("/")[-1] in n][:6] or names[:6]
    return (f"--metric {metric!r}: none of these runs logged it; "
            + (f"they have e.g. {', '.join(near)}" if names else "they logged no metrics yet"))
