"""``cockpit worker``: start queued runs one after another (one per GPU with --gpus).

Engines run in their own sessions, so a worker that dies (or is closed with the terminal)
never takes training with it. A new worker adopts runs whose engine is still alive, marks
runs whose engine vanished ``interrupted`` and resumes them from their last checkpoint ahead
of the queue. It waits with watchfiles on the control directory (no busy polling) and wakes
once a second to sample the GPUs, update keep-awake and reap finished engines.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cockpit.gpu import GpuMonitor
from cockpit.keepawake import KeepAwake
from cockpit.queue import Queue
from cockpit.runs import list_runs, pid_alive, record_engine_exit, start_engine
from engine.rundir import INTERRUPTED, RUNNING, RunDir, atomic_write


class WorkerBusy(RuntimeError):
    pass


def engine_alive(rd: RunDir, pid: int | None) -> bool:
    """The pid is alive and is this run's engine (not a recycled pid)."""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        return b"engine" in cmdline and rd.id.encode() in cmdline
    except OSError:
        return True  # no /proc (macOS): trust the pid


@dataclass
class Slot:
    name: str  # "cpu" or the GPU index
    rd: RunDir | None = None
    proc: subprocess.Popen | None = None  # None for an adopted engine (not our child)
    pid: int | None = None


class Worker:
    def __init__(self, runs_dir: Path, gpus: list[int] | None = None, once: bool = False,
                 threshold: float = 10.0, grace: float = 300.0, log=print):
        self.queue = Queue(runs_dir)
        self.runs_dir, self.once, self.log = runs_dir, once, log
        self.slots = [Slot(str(g)) for g in gpus] if gpus else [Slot("cpu")]
        self.gpus = GpuMonitor()
        self.keepawake = KeepAwake(threshold, grace)
        self.stop = threading.Event()
        self._locks = []

    # -- ownership ----------------------------------------------------------------------
    def lock_slots(self) -> None:
        for slot in self.slots:
            f = open(self.queue.dir / f"worker-{slot.name}.lock", "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                owner = f.read().strip() or "?"
                what = "the CPU" if slot.name == "cpu" else f"GPU {slot.name}"
                raise WorkerBusy(f"another worker (pid {owner}) owns {what}; only one worker may use it") from None
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            self._locks.append(f)

    # -- recovery -----------------------------------------------------------------------
    def recover(self) -> None:
        interrupted = []
        for rd in list_runs(self.runs_dir):
            state = rd.read_state()
            if state.status != RUNNING:
                continue
            if engine_alive(rd, state.pid):
                free = next((s for s in self.slots if s.rd is None), None)
                if free is not None:
                    free.rd, free.pid = rd, state.pid
                    self.log(f"adopted {rd.id}: its engine (pid {state.pid}) is still training")
                continue
            step = (rd.checkpoint_steps() or [0])[-1]
            rd.transition(INTERRUPTED, reason=f"engine process {state.pid} vanished; last checkpoint at step {step}",
                          pid=None)
            rd.transition("queued")
            interrupted.append(rd.id)
            self.log(f"{rd.id} was interrupted; it resumes from step {step} ahead of the queue")
        if interrupted:
            self.queue.push_front(interrupted)

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> int:
        self.lock_slots()
        self.recover()
        from watchfiles import watch

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        self.log(f"worker {os.getpid()} on {', '.join('GPU ' + s.name if s.name != 'cpu' else 'CPU' for s in self.slots)}"
                 f"; waiting for queued runs")
        try:
            self.tick()
            for _ in watch(self.queue.dir, stop_event=self.stop, yield_on_timeout=True, rust_timeout=1000,
                           debounce=50, raise_interrupt=False):
                if self.tick():
                    break
        finally:
            self.keepawake.close()
            busy = [s.rd.id for s in self.slots if s.rd is not None]
            self.write_status(alive=False)
            if busy:
                self.log(f"worker leaving; still training on their own: {', '.join(busy)} "
                         f"(a new worker adopts them)")
        return 0

    def tick(self) -> bool:
        """One round: reap, sample, keep awake, start runs. True when --once is done."""
        for slot in self.slots:
            if slot.rd is not None:
                self.reap(slot)
        snap = self.gpus.snapshot()
        atomic_write(self.queue.dir / "gpus.json", json.dumps({**snap, "time": time.time()}))
        running = any(s.rd is not None for s in self.slots)
        utils = [g["util"] for g in snap["gpus"]] if snap["available"] else None
        ka = self.keepawake.update(utils, running)
        atomic_write(self.queue.dir / "keepawake.json", json.dumps(ka))
        for slot in self.slots:
            if slot.rd is None and not self.stop.is_set():
                rd = self.queue.pop_next()
                if rd is None:
                    break
                self.launch(slot, rd)
        self.write_status(alive=True)
        idle = all(s.rd is None for s in self.slots)
        return self.once and idle and (not self.queue.order or self.queue.paused)

    def launch(self, slot: Slot, rd: RunDir) -> None:
        env = {"CUDA_VISIBLE_DEVICES": slot.name} if slot.name != "cpu" else {}
        rd.transition(RUNNING, pid=None)  # the engine fills in its pid when it starts
        proc = start_engine(rd, env)
        rd.update(pid=proc.pid)
        slot.rd, slot.proc, slot.pid = rd, proc, proc.pid
        self.log(f"started {rd.id} (pid {proc.pid}) on {'CPU' if slot.name == 'cpu' else 'GPU ' + slot.name}")

    def reap(self, slot: Slot) -> None:
        rd = slot.rd
        if slot.proc is not None:
            code = slot.proc.poll()
            if code is None:
                return
        else:
            if engine_alive(rd, slot.pid):
                return
            code = None
        state = record_engine_exit(rd, code)
        self.log(f"{rd.id}: {state.status}" + (f" ({state.reason})" if state.reason else ""))
        slot.rd = slot.proc = slot.pid = None

    def write_status(self, alive: bool) -> None:
        atomic_write(self.queue.dir / "worker.json", json.dumps({
            "pid": os.getpid(), "alive": alive, "heartbeat": time.time(),
            "slots": [{"slot": s.name, "run": s.rd.id if s.rd else None, "pid": s.pid} for s in self.slots]}))
