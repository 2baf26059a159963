"""The run queue: an explicit order of queued run ids plus a pause flag, in
``runs/.cockpit/queue.json``. The CLI, the TUI and the worker all edit it, so every change is
read-modify-write under an exclusive file lock and lands with an atomic replace: no update is
ever lost and no reader sees half a file. Run states stay in each run's state.json.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Iterator

from cockpit.runs import RunError, create_run, find_run, pid_alive
from engine.config import load_config
from engine.rundir import FAILED, INTERRUPTED, QUEUED, RUNNING, STOPPED, RunDir, atomic_write

RETRYABLE = (FAILED, STOPPED, INTERRUPTED)


def control_dir(runs_dir: Path) -> Path:
    d = runs_dir / ".cockpit"
    d.mkdir(parents=True, exist_ok=True)
    return d


class Queue:
    def __init__(self, runs_dir: Path):
        self.runs_dir = runs_dir
        self.dir = control_dir(runs_dir)
        self.file = self.dir / "queue.json"

    # -- storage ------------------------------------------------------------------------
    def read(self) -> dict:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("order"), list):
                return {"order": [str(x) for x in data["order"]], "paused": bool(data.get("paused", False))}
        except (OSError, ValueError):
            pass
        return {"order": [], "paused": False}

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict]:
        with open(self.dir / "queue.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self.read()
            yield data
            atomic_write(self.file, json.dumps(data, indent=1))

    @property
    def order(self) -> list[str]:
        return self.read()["order"]

    @property
    def paused(self) -> bool:
        return self.read()["paused"]

    def run(self, ref: str) -> RunDir:
        return find_run(ref, self.runs_dir)

    # -- edits --------------------------------------------------------------------------
    def add(self, configs: list[str], name: str | None = None, front: bool = False, after: str | None = None,
            overrides: list[str] | None = None) -> list[RunDir]:
        """Validate every config first (a bad one changes nothing), then create and enqueue."""
        for c in configs:
            load_config(c, overrides)
        anchor = self.run(after).id if after else None
        created = [create_run(c, overrides, name if len(configs) == 1 else None, self.runs_dir) for c in configs]
        ids = [rd.id for rd in created]
        with self.edit() as q:
            if front:
                q["order"][0:0] = ids
            elif anchor is not None:
                if anchor not in q["order"]:
                    raise RunError(f"--after {after}: {anchor} is not queued")
                i = q["order"].index(anchor) + 1
                q["order"][i:i] = ids
            else:
                q["order"].extend(ids)
        return created

    def move(self, ref: str, to: int | None = None, up: bool = False, down: bool = False) -> int:
        run_id = self.run(ref).id
        with self.edit() as q:
            order = q["order"]
            if run_id not in order:
                raise RunError(f"{run_id} is not queued; only queued runs have a position")
            i = order.index(run_id)
            j = (to - 1) if to is not None else i - 1 if up else i + 1 if down else i
            j = max(0, min(len(order) - 1, j))
            order.insert(j, order.pop(i))
            return j + 1

    def remove(self, ref: str, force: bool = False) -> None:
        rd = self.run(ref)
        state = rd.read_state()
        if state.status == RUNNING and pid_alive(state.pid):
            raise RunError(f"{rd.id} is running; stop it first (cockpit queue stop {rd.id})")
        if state.status != QUEUED and not force:
            raise RunError(f"{rd.id} is {state.status}, not queued: its directory holds results; "
                           f"pass --force to delete it")
        with self.edit() as q:
            if rd.id in q["order"]:
                q["order"].remove(rd.id)
        shutil.rmtree(rd.path)

    def stop(self, ref: str) -> str:
        rd = self.run(ref)
        state = rd.read_state()
        if state.status == RUNNING and pid_alive(state.pid):
            os.kill(state.pid, signal.SIGTERM)  # the engine checkpoints and records "stopped"
            return f"asked {rd.id} (pid {state.pid}) to stop; it checkpoints first"
        if state.status == QUEUED:
            with self.edit() as q:
                if rd.id in q["order"]:
                    q["order"].remove(rd.id)
            rd.transition(STOPPED, reason="stopped while queued")
            return f"{rd.id} taken out of the queue (stopped)"
        raise RunError(f"{rd.id} is {state.status}; only running or queued runs can be stopped")

    def retry(self, ref: str) -> RunDir:
        rd = self.run(ref)
        state = rd.read_state()
        if state.status not in RETRYABLE:
            raise RunError(f"{rd.id} is {state.status}; only {', '.join(RETRYABLE)} runs can be retried")
        rd.transition(QUEUED, reason="")
        with self.edit() as q:
            if rd.id not in q["order"]:
                q["order"].append(rd.id)
        return rd

    def set_paused(self, paused: bool) -> None:
        with self.edit() as q:
            q["paused"] = paused

    # -- for the worker -----------------------------------------------------------------
    def pop_next(self) -> RunDir | None:
        """The first queued run that is still queued (others are dropped from the order)."""
        with self.edit() as q:
            if q["paused"]:
                return None
            while q["order"]:
                run_id = q["order"].pop(0)
                rd = RunDir(self.runs_dir / run_id)
                if rd.state_file.exists() and rd.read_state().status == QUEUED:
                    return rd
        return None

    def push_front(self, run_ids: list[str]) -> None:
        with self.edit() as q:
            q["order"] = run_ids + [r for r in q["order"] if r not in run_ids]
