"""What the analyses need from each run, read from its events (torch-free): parameters, tokens
trained, final validation loss, FLOPs per token and measured throughput."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Point:
    run: str
    params_total: int
    params_non_embedding: int
    tokens: int  # trained
    loss: float  # final validation loss (final_benchmarks/loss)
    flops_per_token: float
    tokens_per_s: float | None  # median over the run's step events
    values: dict[str, Any] = field(default_factory=dict)  # the sweep's values for this run
    lr: float | None = None
    width: int | None = None  # d_model
    parametrization: str = "sp"  # [model] parametrization: sp | mup

    def params(self, counted: str) -> int:
        return self.params_total if counted == "total" else self.params_non_embedding

    @property
    def flops(self) -> float:
        return self.flops_per_token * self.tokens


def read_point(rd) -> tuple[Point | None, str]:
    """A run's point, or None and why it cannot be one."""
    from cockpit.runs import listed, run_config
    from cockpit.summary import summarize

    cfg = run_config(rd)
    s = summarize(listed(rd), cfg)
    if s.final_loss is None or not s.params:
        return None, "no final validation loss (not completed, or [eval] final = false)"
    return Point(rd.id, s.params, s.params_non_embedding or s.params, s.tokens or 0, float(s.final_loss),
                 s.flops_per_token or 6.0 * s.params,
                 s.median_tok_s, rd.read_meta().sweep_values,
                 cfg.optim.lr if cfg is not None else None, cfg.model.d_model if cfg is not None else None,
                 cfg.model.parametrization if cfg is not None else "sp"), ""


def gather(runs_dir: Path, sweep: str | None, refs: list[str]) -> tuple[str, list[Point], list[str]]:
    """(what was asked for, points, one line per run left out)."""
    from cockpit.runs import RunError, find_run, list_runs

    if sweep and refs:
        raise RunError(f"give runs or --sweep {sweep}, not both ({len(refs)} run(s) were given as well)")
    if sweep:
        rds = [rd for rd in list_runs(runs_dir) if rd.read_meta().sweep == sweep]
        if not rds:
            ids = sorted({m for rd in list_runs(runs_dir) if (m := rd.read_meta().sweep) and m.startswith(sweep)})
            if len(ids) == 1:
                return gather(runs_dir, ids[0], [])
            raise RunError(f"sweep '{sweep}' " + (f"matches several: {', '.join(ids)}" if ids else
                           f"not found under {runs_dir}/; list them with: cockpit sweep ls"))
        label = f"sweep {sweep}"
    else:
        if not refs:
            raise RunError("give runs or --sweep NAME")
        rds = [find_run(r, runs_dir) for r in refs]
        label = f"the {len(rds)} run{'s' if len(rds) != 1 else ''} given"
    points, skipped = [], []
    for rd in rds:
        p, why = read_point(rd)
        if p is None:
            skipped.append(f"{rd.id}: {why}")
        else:
            points.append(p)
    return label, points, skipped


SHOWN_LEFT_OUT = 5  # past this many, the runs left out are counted by reason, not listed


def left_out_notes(skipped: list[str]) -> list[str]:
    """"left out: RUN: why" lines; past a handful, the first few and a count per reason (a queued
    sweep of 1,000 runs is one line, not 999)."""
    if len(skipped) <= SHOWN_LEFT_OUT:
        return [f"left out: {line}" for line in skipped]
    reasons: dict[str, int] = {}
    for line in skipped:
        why = line.split(": ", 1)[1] if ": " in line else line
        reasons[why] = reasons.get(why, 0) + 1
    shown = [f"left out: {line}" for line in skipped[:3]]
    counts = "; ".join(f"{n} {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    return shown + [f"left out: {len(skipped)} runs in all: {counts}"]
