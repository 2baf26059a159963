"""Rows of the Queue tab (and the run pickers): every run with its queue position, state,
model size, progress and ETA, built from files off the UI thread. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cockpit.format import params_short
from cockpit.history import Histories
from cockpit.queue import Queue
from cockpit.runs import Listed, read_states, run_config
from cockpit.summary import summarize
from cockpit.worker import device_label
from runspec.run.rundir import BROKEN, COMPLETED, FAILED, INTERRUPTED, QUEUED, RUNNING, STOPPED

# how each state reads in the tables and panels
STATE_STYLE = {RUNNING: "bold green", QUEUED: "cyan", FAILED: "bold red", INTERRUPTED: "yellow",
               COMPLETED: "green", STOPPED: "yellow", BROKEN: "bold red"}


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
    updated: float = 0.0  # time of the newest state transition
    stage: int = 0
    stages: int = 0  # [[stage]] entries
    phase: str = ""  # the progress column shows "stage k/n" (runspec.config.plan.phase)
    devices: str = ""  # where a running run trains: "GPU 0", "GPUs 0,1" (empty on the CPU)
    val_loss: float | None = None  # the final pass's validation loss, else the latest running validation
    bpb: float | None = None
    final: bool = False  # val_loss/bpb are the final pass's
    tok_s: float | None = None
    elapsed: float = 0.0  # engine time over every launch
    gpus: int = 1  # what its config asks for ([train] gpus)
    figures: tuple[str, ...] = ()  # every final figure, 'label value' (the detail line shows them)


def run_rows(runs_dir: Path, histories: Histories, states: dict[str, Listed] | None = None,
             queue: Queue | None = None) -> list[RunRow]:
    """Running runs, then the queue in order, then the rest, newest first."""
    order = (queue or Queue(runs_dir)).order
    rows = []
    for listed in (states or read_states(runs_dir)).values():
        rd, state = listed.rd, listed.state
        if state is None:
            rows.append(RunRow(rd.id, BROKEN, reason=listed.problem))
            continue
        cfg = run_config(rd)
        s = summarize(listed, cfg, histories.get(rd) if rd.events.exists() else None)
        params = params_short(s.params)
        row = RunRow(rd.id, s.status, step=s.step, max_steps=s.max_steps, reason=s.reason, updated=s.updated,
                     size=f"{params} {s.model}" if params and cfg else params or s.model, loss=s.loss,
                     eta_s=s.eta_s, stage=s.stage, stages=s.stages, phase=s.phase, val_loss=s.val_loss, bpb=s.bpb, final=s.final,
                     tok_s=s.tok_s, elapsed=s.wall_s, figures=tuple(s.figures or ()))
        row.position = order.index(rd.id) + 1 if rd.id in order and state.status == QUEUED else None
        row.gpus = cfg.train.gpus if cfg else 1
        if state.status == RUNNING and state.slot and state.slot != "cpu":
            row.devices = device_label(state.slot.split(","))
        rows.append(row)
    rank = {RUNNING: 0, QUEUED: 1}
    rows.sort(key=lambda r: (rank.get(r.status, 2), r.position or 0, -r.updated))
    return rows
