"""Runs side by side (torch-free): the config keys that differ, sizes, tokens, wall clock,
throughput, final losses and conviction statistics, and the curves to overlay. Shared by
`cockpit compare`, `cockpit findings` and the TUI's compare tab."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cockpit.format import clock, human, number
from runspec.run.metrics import FINAL_COLUMNS, FINAL_LOSS, VAL_LOSS, info

# keys that differ between any two runs without saying anything about them
NOISE = ("log.run_name", "log.wandb_name", "data.cache_dir")


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


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def summarize(rd) -> Summary:
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
                   dict(h.final), curves, rd.read_meta().sweep)


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


# (label, final metric, format)
FINALS = [(info(name).label, name, info(name).fmt) for name in FINAL_COLUMNS]  # (label, metric, format)


def short_names(ids: list[str]) -> tuple[list[str], str]:
    """Run ids without their creation stamps (-YYYYMMDD-HHMMSS) where the names stay unique,
    and the stamp they all share ('' when they do not share one)."""
    m = re.search(r"-\d{8}-\d{6}$", ids[0]) if ids else None
    if m and len(ids) > 1 and all(i.endswith(m.group()) for i in ids):
        return [i[: -len(m.group())] for i in ids], m.group()
    # stamps that differ go too while the names alone still tell the runs apart
    bare = [re.sub(r"-\d{8}-\d{6}$", "", i) for i in ids]
    return (bare if len(set(bare)) == len(bare) else list(ids)), ""


def table(summaries: list[Summary]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one column per run, one row per differing key and per figure."""
    header = ["", *short_names([s.run for s in summaries])[0]]
    rows = [[k, *(_value(s.config.get(k)) for s in summaries)] for k in differing([s.config for s in summaries])]
    rows.append(["status", *(s.status for s in summaries)])
    rows.append(["params", *(human(s.params) for s in summaries)])
    rows.append(["params (non-emb.)", *(human(s.params_non_embedding) for s in summaries)])
    rows.append(["tokens", *(human(s.tokens) for s in summaries)])
    rows.append(["wall clock", *(clock(s.wall_s) for s in summaries)])
    rows.append(["tokens/s", *(number(s.tokens_per_s, ",.0f") for s in summaries)])
    for label, key, fmt in FINALS:
        if any(key in s.final for s in summaries):
            rows.append([label, *(number(s.final.get(key), fmt) for s in summaries)])
    if not any(s.final for s in summaries) or any(not s.final for s in summaries):
        rows.append(["last val loss", *(number(s.curves.get(VAL_LOSS, ([], []))[1][-1]
                                             if s.curves.get(VAL_LOSS, ([], []))[1] else None, ".4f")
                                        for s in summaries)])
    return header, rows


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


def overlay_series(summaries, metric: str):
    from cockpit.analysis.termplot import Series

    names = dict(zip([s.run for s in summaries], short_names([s.run for s in summaries])[0]))
    return [Series(names[s.run], *s.curves[metric]) for s in summaries if s.curves.get(metric, ([], []))[0]]


def check_metric(summaries, metric: str) -> str | None:
    """None, or the one-line reason the metric cannot be drawn."""
    if any(metric in s.curves for s in summaries):
        return None
    names = sorted({n for s in summaries for n in s.curves})
    near = [n for n in names if metric.split("/")[-1] in n][:6] or names[:6]
    return (f"--metric {metric!r}: none of these runs logged it; "
            + (f"they have e.g. {', '.join(near)}" if names else "they logged no metrics yet"))
