"""Rows of the Queue tab (and the run pickers): every run with its queue position, state,
model size, progress and ETA, built from files off the UI thread. Torch-free."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cockpit.queue import Queue
from cockpit.runs import list_runs
from cockpit.tui.history import Histories
from engine.config import ConfigError
from engine.rundir import QUEUED, RUNNING, RunDir


@dataclass
class RunRow:
    id: str
    status: str
    position: int | None = None  # in the queue, 1-based
    size: str = ""
    step: int = 0
    max_steps: int = 0
    loss: float | None = None
    eta_s: float | None = None
    reason: str = ""
    checkpoints: int = 0
    updated: float = 0.0  # time of the newest state transition


def human_params(n: int | None) -> str:
    if not n:
        return ""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


_shapes: dict[tuple[Path, int], str] = {}


def model_shape(rd: RunDir) -> str:
    """'6L 384d' from resolved.toml (cached on its mtime): the size of a run before it has
    started and reported its parameter count."""
    try:
        key = (rd.resolved, rd.resolved.stat().st_mtime_ns)
    except OSError:
        return "?"
    if key not in _shapes:
        try:
            m = rd.read_config().model
            _shapes[key] = f"{m.n_layer}L {m.d_model}d"
        except ConfigError:
            _shapes[key] = "?"
    return _shapes[key]


def run_rows(runs_dir: Path, histories: Histories) -> list[RunRow]:
    """Running runs, then the queue in order, then the rest, newest first."""
    order = Queue(runs_dir).order
    rows = []
    for rd in list_runs(runs_dir):
        try:
            state = rd.read_state()
        except ValueError:  # a state.json that is not JSON: show the run, say what is wrong
            rows.append(RunRow(rd.id, "broken", reason=f"{rd.state_file}: not valid JSON"))
            continue
        row = RunRow(rd.id, state.status, step=state.step, max_steps=state.max_steps, reason=state.reason,
                     updated=state.history[-1]["time"] if state.history else 0.0,
                     checkpoints=len(rd.checkpoint_steps()))
        row.position = order.index(rd.id) + 1 if rd.id in order and state.status == QUEUED else None
        if rd.events.exists():
            h = histories.get(rd)
            h.poll()
            row.size = human_params(h.start.get("params")) or model_shape(rd)
            row.step = max(row.step, h.step)
            row.max_steps = h.max_steps or row.max_steps
            row.loss = h.latest.get("train/loss")
            step_ms = h.latest.get("train/step_ms")
            if state.status == RUNNING and step_ms:
                row.eta_s = max(0, row.max_steps - row.step) * step_ms / 1000
        else:
            row.size = model_shape(rd)
            if not row.max_steps:
                try:
                    row.max_steps = rd.read_config().train.max_steps
                except ConfigError:
                    pass
        rows.append(row)
    rank = {RUNNING: 0, QUEUED: 1}
    rows.sort(key=lambda r: (rank.get(r.status, 2), r.position or 0, -r.updated))
    return rows


def start_worker(runs_dir: Path) -> subprocess.Popen:
    """A ``cockpit worker --once`` of its own (its own session, output to
    runs/.cockpit/worker.log), so closing the TUI never stops training."""
    q = Queue(runs_dir)
    with open(q.dir / "worker.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "cockpit", "--runs-dir", str(runs_dir), "worker", "--once"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
