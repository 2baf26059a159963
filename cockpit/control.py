"""What a person does to a run besides queueing it: stop it, retry it, remove it, to one run or
to many at once (a sweep's, a tag's: ``select``). Each is a lifecycle move
(runspec/run/lifecycle.py) made by compare-and-set on the run, plus the queue's order kept in
step; the Queue itself only keeps the order and the pause."""

from __future__ import annotations

import os
import shutil
import signal

from cockpit.queue import Queue
from cockpit.runs import (
    RunError,
    engine_alive,
    list_runs,
    read_state,
    record_engine_exit,
    signal_engine,
    starting,
    sweep_members,
)
from runspec.run.lifecycle import QUEUED, RETRYABLE, RUNNING
from runspec.run.rundir import RunDir, StateConflict, StateError


def remove(q: Queue, ref: str, force: bool = False) -> None:
    """Delete a queued run (or, with ``force``, a finished one). The check and the deletion
    happen under the run's lock, so a worker cannot start it in between."""
    rd = q.run(ref)
    with rd.locked():
        try:
            state = rd.read_state()
        except StateError as e:
            if not force:
                raise RunError(f"{e}; pass --force to delete it anyway") from None
            state = None
        if state is not None and state.status == RUNNING:
            if engine_alive(rd, state) or starting(state):
                raise RunError(f"{rd.id} is running; stop it first (cockpit queue stop {rd.id})")
            if not force:
                raise RunError(f"{rd.id} is marked running but its engine is gone; a worker marks it "
                               f"interrupted (or pass --force to delete it)")
        elif state is not None and state.status != QUEUED and not force:
            raise RunError(f"{rd.id} is {state.status}, not queued: its directory holds results; "
                           f"pass --force to delete it")
        # out of sight first, in one atomic step: a claimer waiting for this lock then finds
        # no directory (never recreates a .lock inside one being emptied, which made rmtree
        # fail with "Directory not empty" under load), and readers skip dot names
        doomed = rd.path.with_name(f".removing-{rd.id}-{os.getpid()}")
        os.rename(rd.path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
    q.drop(rd.id)

def stop(q: Queue, ref: str, reason: str = "") -> str:
    """Take a queued run out of the queue, or ask a running one to stop. Whichever of this
    and a worker's start lands first wins; the other sees the new state. ``reason`` (a search's
    pruner) becomes the run's reason when it stops."""
    rd = q.run(ref)
    try:
        rd.transition("stop", expected=QUEUED, reason=reason or "stopped while queued")
    except StateConflict:
        pass
    except StateError as e:
        raise RunError(str(e)) from None
    else:
        q.drop(rd.id)
        return f"{rd.id} taken out of the queue (stopped)"
    state = read_state(rd)
    if state.status != RUNNING:
        raise RunError(f"{rd.id} is {state.status}; only running or queued runs can be stopped")
    if state.elsewhere():
        raise RunError(f"{rd.id} runs on {state.host} (engine pid {state.pid or 'starting'}), which only that "
                       f"machine can signal: stop it there (cockpit --headless queue stop {rd.id})")
    try:  # an engine that has not started yet reads this when it attaches
        state = rd.update(expected=RUNNING, stop_requested=True, stop_reason=reason)
    except StateConflict:
        return stop(q, ref, reason)  # it ended (or was requeued) meanwhile: look again
    if signal_engine(rd, state, signal.SIGTERM):
        return f"asked {rd.id} (pid {state.pid}) to stop; it checkpoints first"
    if starting(state):
        return f"{rd.id} is starting; it will stop before training"
    raise RunError(f"{rd.id} is marked running but its engine (pid {state.pid}) is gone; "
                   f"a worker marks it interrupted, or: cockpit queue retry {rd.id}")

def retry(q: Queue, ref: str) -> RunDir:
    rd = q.run(ref)
    state = read_state(rd)
    if state.status == RUNNING and state.elsewhere():
        raise RunError(f"{rd.id} is running on {state.host}, whose processes this machine cannot see; retry it "
                       f"there, or, if that machine is gone for good: COCKPIT_HOST={state.host} cockpit --headless "
                       f"queue retry {rd.id}")
    if state.status == RUNNING and not engine_alive(rd, state) and not starting(state):
        record_engine_exit(rd, None, state.launch)  # its engine is gone: interrupted, then queued
    try:
        rd.transition("retry", stop_requested=False)
    except StateConflict:
        state = read_state(rd)
        raise RunError(f"{rd.id} is {state.status}; only {', '.join(RETRYABLE)} runs can be retried") from None
    except StateError as e:
        raise RunError(str(e)) from None
    with q.edit() as data:
        if rd.id not in data["order"]:
            data["order"].append(rd.id)
    return rd


def select(q: Queue, refs: list[str], sweep: str | None = None, tag: str | None = None) -> list[RunDir]:
    """The runs a bulk command acts on: those named, a sweep's (its id or a unique prefix of it,
    as `cockpit sweep ls` lists them) and a tag's, each once, queued ones in queue order first."""
    chosen = [q.run(r) for r in refs]
    if sweep or tag:
        every = list_runs(q.runs_dir)
        if sweep:
            chosen += sweep_members(sweep, every)
        if tag:
            tagged = [rd for rd in every if tag in rd.read_meta().tags]
            if not tagged:
                raise RunError(f"--tag {tag}: no run has this tag (cockpit queue add --tag {tag} sets one)")
            chosen += tagged
    if not chosen:
        raise RunError("give runs, --sweep NAME or --tag TAG")
    order = q.order
    unique = list({rd.id: rd for rd in chosen}.values())
    return sorted(unique, key=lambda rd: (order.index(rd.id) if rd.id in order else len(order), rd.id))


def move_many(q: Queue, rds: list[RunDir], to: int) -> tuple[int, list[str]]:
    """Move the queued ones of ``rds`` together to position ``to`` (1 = next to start), keeping
    their order, in one edit of the queue; (where the first landed, the ids that are not queued)."""
    ids = [rd.id for rd in rds]
    with q.edit() as data:
        order = data["order"]
        moving = [i for i in order if i in ids]
        rest = [i for i in order if i not in ids]
        at = max(0, min(len(rest), to - 1))
        data["order"] = rest[:at] + moving + rest[at:]
    return at + 1, [i for i in ids if i not in moving]

