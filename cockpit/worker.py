"""``cockpit worker``: start queued runs one after another (one per GPU with --gpus).

Engines run in their own sessions, so a worker that dies (or is closed with the terminal)
never takes training with it. Each worker owns the runs it started: their state names it as
owner and the slot (CPU, or GPU index) they hold. A new worker adopts a live engine only when
its owner was a worker of the same slot that is gone; it marks runs whose engine vanished
``interrupted`` and resumes them from their last checkpoint ahead of the queue (unless the
last resume made no progress: then a person decides). Every worker announces itself in
``runs/.cockpit/workers/<pid>.json`` (a heartbeat), so one worker leaving never hides another.
It waits with watchfiles on the control directory (no busy polling) and wakes once a second
to sample the GPUs, update keep-awake and reap finished engines.
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
from cockpit.runs import claim, engine_alive, read_states, record_engine_exit, start_engine
from engine.process import Proc
from engine.rundir import INTERRUPTED, QUEUED, RUNNING, RunDir, RunState, StateError, atomic_write

HEARTBEAT_STALE_S = 10  # a worker file older than this belongs to a worker that is gone
RECOVER_EVERY_S = 10  # how often a running worker looks for runs whose engine vanished


class WorkerBusy(RuntimeError):
    pass


@dataclass
class Slot:
    name: str  # "cpu" or the GPU index
    rd: RunDir | None = None
    proc: subprocess.Popen | None = None  # None for an adopted engine (not our child)
    state: RunState | None = None  # as of the launch or adoption: identifies the engine
    launch: str | None = None

    @property
    def label(self) -> str:
        return "CPU" if self.name == "cpu" else f"GPU {self.name}"


def workers_dir(runs_dir: Path) -> Path:
    d = runs_dir / ".cockpit" / "workers"
    d.mkdir(parents=True, exist_ok=True)
    return d


def live_workers(runs_dir: Path) -> list[dict]:
    """Every worker whose process is alive and whose heartbeat is fresh."""
    out = []
    d = runs_dir / ".cockpit" / "workers"
    for f in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            w = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        proc = Proc.from_dict(w.get("proc"))
        if proc is not None and proc.alive() and time.time() - w.get("heartbeat", 0) < HEARTBEAT_STALE_S:
            out.append(w)
    return out


def should_resume(state: RunState) -> bool:
    """Resume an interrupted run automatically unless its previous resume got nowhere: two
    interruptions at the same checkpoint step mean it dies on its own (out of memory, a bad
    node), and restarting it forever would hide that."""
    steps = [h.get("step") for h in state.history if h.get("status") == INTERRUPTED]
    return len(steps) < 2 or steps[-1] != steps[-2]


class Worker:
    def __init__(self, runs_dir: Path, gpus: list[int] | None = None, once: bool = False,
                 threshold: float = 10.0, grace: float = 300.0, log=print):
        self.runs_dir, self.once, self.log = runs_dir, once, log
        self.queue = Queue(runs_dir, warn=lambda m: log(f"warning: {m}"))
        self.slots = [Slot(str(g)) for g in gpus] if gpus else [Slot("cpu")]
        self.gpus = GpuMonitor()
        self.keepawake = KeepAwake(threshold, grace)
        self.stop = threading.Event()
        self.me = Proc.me("worker")
        self.file = workers_dir(runs_dir) / f"{self.me.pid}.json"
        self._locks = []
        self._recovered_at = 0.0
        self.recovered = 0.0  # wall time of the last recovery pass, in the worker's file

    # -- ownership ----------------------------------------------------------------------
    def check_gpus(self) -> None:
        """--gpus names devices this machine has (NVML, or COCKPIT_FAKE_GPUS for tests)."""
        wanted = [int(s.name) for s in self.slots if s.name != "cpu"]
        if not wanted:
            return
        count = self.gpus.device_count()
        if count is None:
            raise WorkerBusy(f"--gpus {','.join(map(str, wanted))}: no NVIDIA GPU is visible here "
                             f"({self.gpus.error}); run the worker without --gpus to train on the CPU")
        missing = [g for g in wanted if g >= count]
        if missing:
            raise WorkerBusy(f"--gpus: GPU {missing[0]} does not exist; this machine has {count} "
                             f"(indices 0-{count - 1})")

    def lock_slots(self) -> None:
        for slot in self.slots:
            f = open(self.queue.dir / f"worker-{slot.name}.lock", "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                owner = f.read().strip() or "?"
                raise WorkerBusy(f"another worker (pid {owner}) owns the {slot.label}; only one worker may use "
                                 f"it (cockpit status lists the workers)") from None
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            self._locks.append(f)

    def owns(self, state: RunState) -> bool:
        owner = state.owner_proc()
        return owner is not None and owner.pid == self.me.pid and owner.start == self.me.start

    # -- recovery -----------------------------------------------------------------------
    def recover(self) -> None:
        """Adopt the live engines of a dead worker of our slots; mark runs whose engine is
        gone (and whose owner is gone) interrupted and put them at the front of the queue."""
        self._recovered_at = time.monotonic()
        self.recovered = time.time()
        resume = []
        for listed in read_states(self.runs_dir).values():
            rd, state = listed.rd, listed.state
            if state is None or state.status != RUNNING or self.owns(state):
                continue
            owner = state.owner_proc()
            owner_alive = owner is not None and owner.alive()
            if engine_alive(rd, state):
                if owner_alive or (owner is not None and owner.kind != "worker"):
                    continue  # its owner (another worker, a headless CLI) is alive, or it is not a worker's
                slot = next((s for s in self.slots if s.rd is None and s.name == (state.slot or "cpu")), None)
                if slot is not None:
                    self.adopt(slot, rd, state)
                continue
            if owner_alive:
                continue  # starting, or its owner reaps it
            try:
                new = record_engine_exit(rd, None, state.launch)
            except Exception as e:  # noqa: BLE001 - one broken run must not stop the worker
                self.log(f"{rd.id}: {e}")
                continue
            if new.status == INTERRUPTED and self.requeue(rd, new):
                resume.append(rd.id)
        if resume:
            self.queue.push_front(resume)

    def adopt(self, slot: Slot, rd: RunDir, state: RunState) -> None:
        old = state.owner

        def take(s: RunState) -> None:
            if s.status != RUNNING or s.owner != old or s.pid != state.pid:
                raise StateError(f"{rd.id} changed meanwhile")
            s.owner = self.me.to_dict()

        try:
            state = rd.modify(take)
        except StateError:
            return
        slot.rd, slot.proc, slot.state, slot.launch = rd, None, state, state.launch
        self.log(f"adopted {rd.id}: its engine (pid {state.pid}) is still training on the {slot.label}")

    def requeue(self, rd: RunDir, state: RunState) -> bool:
        """An interrupted run goes back to the front of the queue, unless it keeps dying."""
        step = state.step
        if not should_resume(state):
            self.log(f"{rd.id} was interrupted again at step {step} without progress; not resuming it "
                     f"(cockpit queue retry {rd.id} to try again)")
            return False
        try:
            rd.transition(QUEUED, expected=INTERRUPTED, reason="")
        except StateError:
            return False
        self.log(f"{rd.id} was interrupted; it resumes from step {step} ahead of the queue")
        return True

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> int:
        self.check_gpus()
        self.lock_slots()
        self.write_status(alive=True)
        self.recover()
        from watchfiles import watch

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        self.log(f"worker {os.getpid()} on {', '.join(s.label for s in self.slots)}; waiting for queued runs")
        try:
            self.tick()
            for _ in watch(self.queue.dir, stop_event=self.stop, yield_on_timeout=True, rust_timeout=1000,
                           debounce=50, raise_interrupt=False,
                           watch_filter=lambda change, path: not path.endswith((".tmp", ".lock"))):
                if self.tick():
                    break
        finally:
            self.keepawake.close()
            busy = [s.rd.id for s in self.slots if s.rd is not None]
            self.file.unlink(missing_ok=True)
            if busy:
                self.log(f"worker leaving; still training on their own: {', '.join(busy)} "
                         f"(a new worker for the same device adopts them)")
        return 0

    def tick(self) -> bool:
        """One round: reap, recover, sample, keep awake, start runs. True when --once is done."""
        for slot in self.slots:
            if slot.rd is not None:
                self.reap(slot)
        if time.monotonic() - self._recovered_at >= RECOVER_EVERY_S:
            self.recover()
        snap = self.gpus.snapshot()
        atomic_write(self.queue.dir / "gpus.json", json.dumps({**snap, "time": time.time()}))
        running = any(s.rd is not None for s in self.slots)
        utils = [g["util"] for g in snap["gpus"]] if snap["available"] else None
        ka = self.keepawake.update(utils, running)
        atomic_write(self.queue.dir / "keepawake.json", json.dumps(ka))
        for slot in self.slots:
            while slot.rd is None and not self.stop.is_set():
                rd = self.queue.next_ready(skip=lambda run_id, why: self.log(f"skipped {run_id}: {why}"))
                if rd is None:
                    break
                self.launch(slot, rd)
        self.write_status(alive=True)
        idle = all(s.rd is None for s in self.slots)
        if not (self.once and idle):
            return False
        if not self.queue.order or self.queue.paused:
            return True
        if not self.queue.can_progress():  # what is left waits on stopped runs: only the user can move it
            self.log(f"--once: {len(self.queue.order)} queued run(s) wait on stopped runs; resume those, then "
                     f"start a worker again")
            return True
        return False

    def launch(self, slot: Slot, rd: RunDir) -> None:
        """Claim the run (queued -> running, compare-and-set: a stop that came first wins) and
        start its engine on this slot."""
        try:
            launch = claim(rd, self.me, expected=QUEUED, slot=slot.name)
        except StateError as e:
            self.log(f"not starting {rd.id}: {e}")
            return
        env = {"CUDA_VISIBLE_DEVICES": slot.name} if slot.name != "cpu" else {}
        try:
            proc = start_engine(rd, launch, env)
        except OSError as e:
            self.log(f"could not start {rd.id}: {e}")
            rd.transition("failed", expected=RUNNING, reason=f"could not start the engine: {e}")
            return
        slot.rd, slot.proc, slot.launch = rd, proc, launch
        slot.state = None
        self.log(f"started {rd.id} (pid {proc.pid}) on the {slot.label}")

    def reap(self, slot: Slot) -> None:
        rd = slot.rd
        if slot.proc is not None:
            code = slot.proc.poll()
            if code is None:
                return
        else:
            if slot.state is not None and engine_alive(rd, slot.state):
                return
            code = None
        try:
            state = record_engine_exit(rd, code, slot.launch)
        except Exception as e:  # noqa: BLE001 - the directory may have been removed by hand
            self.log(f"{rd.id}: {e}")
            slot.rd = slot.proc = slot.state = slot.launch = None
            return
        self.log(f"{rd.id}: {state.status}" + (f" ({state.reason})" if state.reason else ""))
        slot.rd = slot.proc = slot.state = slot.launch = None
        if state.status == INTERRUPTED and self.requeue(rd, state):
            self.queue.push_front([rd.id])

    def write_status(self, alive: bool) -> None:
        atomic_write(self.file, json.dumps({
            "proc": self.me.to_dict(), "pid": self.me.pid, "alive": alive, "heartbeat": time.time(),
            "recovered": self.recovered,
            "slots": [{"slot": s.name, "run": s.rd.id if s.rd else None,
                       "pid": (s.proc.pid if s.proc else s.state.pid if s.state else None)} for s in self.slots]}))
