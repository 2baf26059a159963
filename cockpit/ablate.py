"""``cockpit ablate``: a question ("does X help at this size?") as one command.

The baseline config and each variant (one ``--vary`` key changed at a time, or every
combination with ``grid``), each with N seeds, are queued as one sweep: ``NAME-base-s<seed>``,
``NAME-<key>-<value>-s<seed>``. A findings entry is written at once, its evidence the sweep
compared against the baseline group (``compare --sweep ID --baseline NAME-base``); when the last
run of the ablation finishes, the worker rebuilds FINDINGS.md, so the answer is there in the
morning. The ablation's record (``ABLATIONS/<sweep id>.json`` in the runs directory) is what
tells the worker which findings directory to rebuild. Torch-free."""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cockpit.seeds import SEED_KEY, Seeds, seed_name
from runspec.config.load import parse_overrides
from runspec.config.schema import ConfigError
from runspec.fs import atomic_write

ABLATIONS = ".ablations"  # in the runs directory
BASE = "base"


class AblationError(ValueError):
    pass


def parse_vary(text: str) -> tuple[str, list[Any]]:
    """'KEY=V1,V2,...' -> (key, [values]), each value TOML-typed as --set parses it; commas inside
    brackets or quotes stay in their value (model.shorten=[1,3,1],[1,1,1])."""
    key, sep, raw = text.partition("=")
    if not sep or not raw.strip():
        raise AblationError(f"--vary {text!r}: expected KEY=V1,V2,... e.g. --vary model.ffn.activation=gelu,silu")
    parts, depth, quote, cur = [], 0, "", ""
    for ch in raw:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    try:
        values = [parse_overrides([f"{key.strip()}={p.strip()}"])[key.strip()] for p in parts if p.strip()]
    except ConfigError as e:  # the key is not section.key
        raise AblationError(f"--vary {text!r}: {e}") from None
    if key.strip() == SEED_KEY:
        raise AblationError(f"--vary {key.strip()}: seeds are not a variant; use --seeds N")
    return key.strip(), values


def _slug(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")[:24] or "x"


@dataclass
class Arm:
    label: str  # NAME-base or NAME-<key>-<value>
    values: dict[str, Any]  # the keys this arm changes (empty for the baseline)


def arms(name: str, varies: list[tuple[str, list[Any]]], grid: bool = False) -> list[Arm]:
    """The baseline, then each variant: one key changed at a time, or (grid) every combination."""
    out = [Arm(f"{name}-{BASE}", {})]
    if grid:
        keys = [k for k, _ in varies]
        for combo in itertools.product(*(v for _, v in varies)):
            values = dict(zip(keys, combo))
            out.append(Arm(f"{name}-" + "-".join(f"{k.rsplit('.', 1)[-1]}-{_slug(v)}" for k, v in values.items()),
                           values))
    else:
        for key, values in varies:
            for v in values:
                out.append(Arm(f"{name}-{key.rsplit('.', 1)[-1]}-{_slug(v)}", {key: v}))
    labels = [a.label for a in out]
    if len(set(labels)) != len(labels):  # two keys with the same last part: spell the whole key
        for a in out[1:]:
            a.label = f"{name}-" + "-".join(f"{k.replace('.', '_')}-{_slug(v)}" for k, v in a.values.items())
    return out


@dataclass
class Record:
    sweep: str  # the sweep id its runs carry
    base: str  # the base config
    baseline: str  # the baseline group's name (NAME-base)
    findings: str  # the findings directory whose FINDINGS.md is rebuilt when the ablation ends
    entry: str  # its entry
    runs: list[str] = field(default_factory=list)
    finished: bool = False


def plan(base: Path, varies: list[tuple[str, list[Any]]], seeds: Seeds, name: str, grid: bool = False,
         common: list[str] | None = None):
    """[(run name, overrides, values, checked config)] for every arm and seed (``common``: --set
    overrides every arm shares); a bad value is an AblationError naming the arm (nothing is created)."""
    from cockpit.runs import check_config
    from cockpit.sweep import toml_value

    common = list(common or [])
    base_cfg = check_config(base, common)
    planned = []
    for arm in arms(name, varies, grid):
        for seed in seeds.values(base_cfg.train.seed):
            overrides = [*common, *(f"{k}={toml_value(v)}" for k, v in arm.values.items()), f"{SEED_KEY}={seed}"]
            try:
                cfg = check_config(base, overrides)
            except ConfigError as e:
                raise AblationError(f"{arm.label}: {e}") from None
            planned.append((seed_name(arm.label, seed), overrides, {**arm.values, SEED_KEY: seed}, cfg))
    return planned


def queue_ablation(base: Path, varies, seeds: Seeds, name: str, runs_dir: Path, findings_dir: Path,
                   question: str, grid: bool = False, common: list[str] | None = None) -> tuple[Record, list]:
    """Queue every arm and seed as one sweep and write its findings entry and record."""
    from cockpit.findings import new_entry
    from cockpit.queue import Queue
    from runspec.run.rundir import RunMeta

    planned = plan(base, varies, seeds, name, grid, common)
    sweep_id = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    items = [(str(base), ov, run_name, RunMeta(sweep=sweep_id, sweep_values=values, tags=["ablation"]), cfg)
             for run_name, ov, values, cfg in planned]
    rds = Queue(runs_dir).add_runs(items)
    entry = new_entry(findings_dir, question, [], sweep_id, "compare", baseline=f"{name}-{BASE}",
                      prose=f"Queued by `cockpit ablate {base.name}`: {len(planned)} runs "
                            f"({len(planned) // len(seeds.values(0))} arms × {len(seeds.values(0))} seeds). "
                            f"Write the answer here once the table below is in.")
    record = Record(sweep_id, str(base), f"{name}-{BASE}", str(findings_dir.resolve()), str(entry.resolve()),
                    [rd.id for rd in rds])
    save(runs_dir, record)
    return record, rds


def save(runs_dir: Path, record: Record) -> None:
    d = runs_dir / ABLATIONS
    d.mkdir(exist_ok=True)
    atomic_write(d / f"{record.sweep}.json", json.dumps(asdict(record), indent=1))


def load(runs_dir: Path, sweep: str) -> Record | None:
    try:
        data = json.loads((runs_dir / ABLATIONS / f"{sweep}.json").read_text(encoding="utf-8"))
        return Record(**{k: data[k] for k in Record.__dataclass_fields__ if k in data})
    except (OSError, ValueError, TypeError):
        return None


def on_run_end(rd, runs_dir: Path, log) -> None:
    """After a run of an ablation ends (the worker calls this): once none of its runs is queued
    or running, rebuild its findings document; said in the worker's log either way."""
    from cockpit.findings import FindingsError, build
    from cockpit.runs import RunError, find_run
    from runspec.run.lifecycle import QUEUED, RUNNING
    from runspec.run.rundir import StateError

    sweep = rd.read_meta().sweep
    record = load(runs_dir, sweep) if sweep else None
    if record is None or record.finished:
        return
    left = 0
    for run in record.runs:
        try:
            if find_run(run, runs_dir).read_state().status in (QUEUED, RUNNING):
                left += 1
        except (RunError, StateError):  # a run removed (or broken) by hand no longer counts
            continue
    if left:
        return
    try:
        out, _ = build(Path(record.findings), runs_dir)
    except (FindingsError, OSError) as e:
        log(f"ablation {record.sweep} finished; its findings were not rebuilt: {e}")
        return
    record.finished = True
    save(runs_dir, record)
    log(f"ablation {record.sweep} finished: wrote {out} (cockpit compare --sweep {record.sweep} "
        f"--baseline {record.baseline})")
