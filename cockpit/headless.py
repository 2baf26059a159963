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

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cockpit import exit_codes, notify
from cockpit.history import RunHistory
from cockpit.runs import record_engine_exit
from cockpit.summary import final_items
from runspec.config.plan import phase
from runspec.run import events
from runspec.run.metrics import FINAL_BPB, FINAL_LOSS, TOKENS_PER_S, TRAIN_LOSS, VAL_LOSS, busy_note
from runspec.run.rundir import COMPLETED, FAILED, RunDir


def fields(h: RunHistory) -> str:
    """loss, last validation loss and tokens/s, as far as the run has reported them."""
    m, parts = h.latest, []
    if TRAIN_LOSS in m:
        parts.append(f"loss {m[TRAIN_LOSS]:.4f}")
    if VAL_LOSS in m:
        parts.append(f"val {m[VAL_LOSS]:.4f}")
    if TOKENS_PER_S in m:
        parts.append(f"{m[TOKENS_PER_S]:,.0f} tok/s")
    if note := busy_note(h.latest, h.cores):  # other processes share the cores: why it is slow
        parts.append(note)
    if h.progress:  # after the last step: the final pass, which can take longer than the last steps did
        parts.append(h.progress)
    return "  ".join(parts)


QUIET_S = 30.0  # without a terminal, the longest silence while the steps advance


def follow(rd: RunDir, proc: subprocess.Popen, launch: str | None = None, console: Console | None = None) -> int:
    """Show progress until the engine exits; return the CLI exit status (cockpit.exit_codes:
    0 completed, 1 failed, 2 bad input such as unreadable data, 3 stopped, 4 killed)."""
    console = console or Console()
    prog = RunHistory(rd)
    prog.reader.offset = rd.events.stat().st_size if rd.events.exists() else 0  # a resume shows new events only
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

    def on_event(ev: events.Event) -> None:
        if ev.kind == events.WARNING:  # e.g. a damaged checkpoint set aside on resume
            console.print(f"warning: {ev.get('message', '')}", markup=False, highlight=False, soft_wrap=True,
                          style="yellow")
        elif ev.kind == events.START and ev.get("resumed_from") is not None:  # the step the engine really loaded
            console.print(f"resumed from step {ev.get('resumed_from')}", markup=False, highlight=False)
        elif ev.kind == events.STAGE:  # a stage began, or ReLoRA restarted: always a line of its own
            console.print(f"step {ev.step}: stage {phase(int(ev.get('stage') or 0), int(ev.get('stages') or 0), prog.first_start)}"
                          f"{' ' + ev.get('name') if ev.get('name') else ''}: {ev.get('description', '')} "
                          f"({ev.get('params', 0):,} parameters, {ev.get('params_trainable', 0):,} trainable)"
                          + events.stage_probe(ev.data),
                          markup=False, highlight=False, soft_wrap=True)
        elif (ev.kind == events.EVAL or (ev.kind == events.PROGRESS and not ev.get("done"))) and not live:
            line()  # without a terminal: a line at each evaluation, and when the final pass begins

    said = {"at": time.monotonic(), "step": -1}

    def line() -> None:
        console.print(f"step {prog.step}/{prog.max_steps}  {fields(prog)}", markup=False, highlight=False,
                      soft_wrap=True)
        said.update(at=time.monotonic(), step=prog.step)

    previous = signal.signal(signal.SIGINT, on_sigint)
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console,
                   transient=False, disable=not live)
    try:
        with bar:
            task = bar.add_task(rd.id, total=None, info="starting")
            while True:
                done = proc.poll() is not None
                prog.poll(on_event=on_event)
                bar.update(task, completed=prog.step, total=prog.max_steps or None, info=fields(prog))
                if not live and prog.step != said["step"] and time.monotonic() - said["at"] >= QUIET_S:
                    line()  # a log file is never silent for minutes while the run advances
                if done:
                    break
                time.sleep(0.2)
    finally:
        signal.signal(signal.SIGINT, previous)
    return _report(rd, proc, prog, console, launch)


def _report(rd: RunDir, proc: subprocess.Popen, prog: RunHistory, console: Console, launch: str | None) -> int:
    state = record_engine_exit(rd, proc.returncode, launch)

    def out(text: str) -> None:  # paths and states are data, not markup; never wrap them
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    out(f"run         {rd.path}  [{state.status}] step {state.step}/{state.max_steps or prog.max_steps}")
    if prog.final:
        out(f"final       val loss {prog.final.get(FINAL_LOSS, float('nan')):.4f}  "
            f"bpb {prog.final.get(FINAL_BPB, float('nan')):.4f}")
        # every other final figure the run has, three to a line (the registry names and formats them)
        rest = final_items({k: v for k, v in prog.final.items() if k not in (FINAL_LOSS, FINAL_BPB)})
        for i in range(0, len(rest), 3):
            out("            " + "  ".join(rest[i:i + 3]))
    ckpt = rd.latest_checkpoint()
    if ckpt:
        out(f"checkpoint  {ckpt}")
    wandb_runs = sorted(rd.wandb.glob("offline-run-*")) + sorted(rd.wandb.glob("run-*")) if rd.wandb.is_dir() else []
    if wandb_runs:
        out(f"wandb       {wandb_runs[-1]}  (upload with: wandb sync {wandb_runs[-1]})")
    out(f"log         {rd.log}")
    if state.status in (COMPLETED, FAILED):  # the [notify] hook, for a run left to train in a terminal
        try:
            notify.fire(notify.load(), state.status, rd.id, str(rd.path), state.status, state.reason,
                        lambda line: print(f"warning: {line}", file=sys.stderr))
        except notify.NotifyError as e:
            print(f"warning: {e}", file=sys.stderr)
    if state.status == FAILED:
        print(f"error: run {rd.id} failed: {state.reason}", file=sys.stderr)
    elif state.status != COMPLETED:
        out(f"{state.reason}; continue with: cockpit --headless resume {rd.id}")
    return exit_codes.for_run(state)  # not completed is never 0 (cockpit/exit_codes.py)
