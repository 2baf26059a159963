"""Headless training: follow a run's events.jsonl and show one live progress line.

Works over SSH: on a terminal it is a rich progress bar (step/total, loss, last val loss,
tokens/s, ETA); without one (a pipe, CI) it prints a plain line at each evaluation. Ctrl-C
asks the engine to stop cleanly (it checkpoints and records ``stopped``); a second Ctrl-C
kills it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cockpit.runs import record_engine_exit
from engine import events
from engine.rundir import COMPLETED, FAILED, RunDir


@dataclass
class RunProgress:
    step: int = 0
    max_steps: int = 0
    loss: float | None = None
    val_loss: float | None = None
    tok_s: float | None = None
    final: dict[str, float] = field(default_factory=dict)
    wandb_dir: str | None = None
    checkpoint: str | None = None
    sample: str | None = None

    def apply(self, ev: events.Event) -> None:
        m = ev.metrics
        if ev.kind == events.START:
            self.step = ev.step or 0
            self.max_steps = ev.get("max_steps", self.max_steps)
            self.wandb_dir = ev.get("wandb_dir")
        elif ev.kind == events.STEP:
            self.step = ev.step or self.step
            self.max_steps = ev.get("max_steps", self.max_steps)
            self.loss = m.get("train/loss", self.loss)
            self.tok_s = m.get("train/tokens_per_s", self.tok_s)
        elif ev.kind == events.EVAL:
            self.val_loss = m.get("train_benchmarks/loss", self.val_loss)
        elif ev.kind == events.FINAL:
            self.final = m
        elif ev.kind == events.CHECKPOINT:
            self.checkpoint = ev.get("path")
        elif ev.kind == events.SAMPLE:
            self.sample = ev.get("text")

    def fields(self) -> str:
        parts = []
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.val_loss is not None:
            parts.append(f"val {self.val_loss:.4f}")
        if self.tok_s is not None:
            parts.append(f"{self.tok_s:,.0f} tok/s")
        return "  ".join(parts)


def follow(rd: RunDir, proc: subprocess.Popen, console: Console | None = None) -> int:
    """Show progress until the engine exits; return the CLI exit status (0 ok, 1 failed)."""
    console = console or Console()
    reader = events.EventReader(rd.events)
    reader.offset = rd.events.stat().st_size if rd.events.exists() else 0  # a resume shows new events only
    prog = RunProgress()
    live = console.is_terminal
    interrupts = 0

    def on_sigint(signum, frame):
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            console.print("[yellow]stopping: the engine is writing a checkpoint (Ctrl-C again to kill it)[/]")
            proc.send_signal(signal.SIGINT)
        else:
            proc.kill()

    previous = signal.signal(signal.SIGINT, on_sigint)
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console,
                   transient=False, disable=not live)
    try:
        with bar:
            task = bar.add_task(rd.id, total=None, info="starting")
            while True:
                done = proc.poll() is not None
                for ev in reader.read_new():
                    prog.apply(ev)
                    if not live and ev.kind == events.EVAL:
                        console.print(f"step {prog.step}/{prog.max_steps}  {prog.fields()}",
                                      markup=False, highlight=False, soft_wrap=True)
                bar.update(task, completed=prog.step, total=prog.max_steps or None, info=prog.fields())
                if done:
                    break
                time.sleep(0.2)
    finally:
        signal.signal(signal.SIGINT, previous)
    return _report(rd, proc, prog, console)


def _report(rd: RunDir, proc: subprocess.Popen, prog: RunProgress, console: Console) -> int:
    state = record_engine_exit(rd, proc.returncode)

    def out(text: str) -> None:  # paths and states are data, not markup; never wrap them
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    out(f"run         {rd.path}  [{state.status}] step {state.step}/{state.max_steps or prog.max_steps}")
    if prog.final:
        out(f"final       val loss {prog.final.get('final_benchmarks/loss', float('nan')):.4f}  "
            f"bpb {prog.final.get('final_benchmarks/bpb', float('nan')):.4f}")
    ckpt = rd.latest_checkpoint()
    if ckpt:
        out(f"checkpoint  {ckpt}")
    wandb_runs = sorted(rd.wandb.glob("offline-run-*")) + sorted(rd.wandb.glob("run-*")) if rd.wandb.is_dir() else []
    if wandb_runs:
        out(f"wandb       {wandb_runs[-1]}  (upload with: wandb sync {wandb_runs[-1]})")
    out(f"log         {rd.log}")
    if state.status == FAILED:
        print(f"error: run {rd.id} failed: {state.reason}", file=sys.stderr)
        return 1
    if state.status != COMPLETED:
        out(f"{state.reason}; continue with: cockpit --headless resume {rd.id}")
    return 0
