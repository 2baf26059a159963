"""``cockpit worker``: start queued runs one after another (with --gpus, as many at once as
the GPUs hold: a run asking for ``[train] gpus = N`` takes N of them).

GPUs are handed out in queue order with conservative backfill: when the run at the head of
the queue needs more GPUs than are free, it waits, and a run behind it may start on free GPUs
only if the GPUs not taken by such gap-fillers still number what the head needs. So smaller
runs fill gaps, and the head never waits for a run that started after it became the head.

Engines run in their own sessions, so a worker that dies (or is closed with the terminal)
never takes training with it. Each worker owns the runs it started: their state names it as
owner and the slot (CPU, or GPU index) they hold. A new worker adopts a live engine only when
its owner was a worker of the same slot that is gone; it marks runs whose engine vanished
``interrupted`` and resumes them from their last checkpoint ahead of the queue (unless the
last resume made no progress: then a person decides). Every worker announces itself in
``runs/.cockpit/workers/<host>-<pid>.json`` (a heartbeat), so one worker leaving never hides
another. The queue's locks are flock locks, which one machine cannot see from another (NFS may
not honour them at all), so a worker refuses to start beside a live worker of another machine,
and leaves alone the runs another machine launched (their pids mean nothing here).
It waits with watchfiles on the control directory (no busy polling) and wakes once a second
to sample the GPUs, update keep-awake and reap finished engines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cockpit import ablate, notify
from cockpit.gpu import GpuMonitor
from cockpit.keepawake import KeepAwake
from cockpit.queue import Queue
from cockpit.runs import claim, engine_alive, read_states, record_engine_exit, run_config, start_engine
from runspec.fs import LockHeld, acquire, atomic_write
from runspec.run.process import Proc, this_host
from runspec.run.rundir import COMPLETED, FAILED, INTERRUPTED, QUEUED, RUNNING, RunDir, RunState, StateError

HEARTBEAT_STALE_S = 10  # a worker file older than this belongs to a worker that is gone
REMOTE_STALE_S = 60  # the same for another machine's worker, whose pid cannot be checked (clocks may differ)
RECOVER_EVERY_S = 10  # how often a running worker looks for runs whose engine vanished


class WorkerBusy(RuntimeError):
    pass


@dataclass
class Slot:
    """A run this worker started or adopted, and the devices it holds."""

    devices: list[str]  # ["cpu"] or GPU indices
    rd: RunDir
    proc: subprocess.Popen | None = None  # None for an adopted engine (not our child)
    state: RunState | None = None  # as of the launch or adoption: identifies the engine
    launch: str | None = None
    filler: bool = False  # started behind a head run that was waiting for GPUs
    taken: int = 1  # slots it holds on each of its devices (of the worker's --slots per device)

    @property
    def name(self) -> str:
        """What the run's state records as its slot: "cpu" or "0,1"."""
        return ",".join(self.devices)

    @property
    def label(self) -> str:
        return device_label(self.devices)


def device_label(devices: list[str]) -> str:
    if devices == ["cpu"]:
        return "CPU"
    return f"GPU {devices[0]}" if len(devices) == 1 else f"GPUs {','.join(devices)}"


def gpus_wanted(rd: RunDir) -> int:
    """The GPUs a queued run asks for ([train] gpus); 1 when its config cannot be read (the
    engine then fails it with the reason). Asked each tick for every waiting run: the config
    is parsed again only when its file changes."""
    cfg = run_config(rd)
    return max(1, cfg.train.gpus) if cfg is not None else 1


def slots_wanted(rd: RunDir) -> int:
    """The worker slots a queued run takes on each device ([train] slots); 1 when unreadable."""
    cfg = run_config(rd)
    return max(1, cfg.train.slots) if cfg is not None else 1


def cpu_threads(taken: int, per_device: int) -> int:
    """Intra-op threads for a CPU run holding ``taken`` of ``per_device`` slots: the cores split
    between the runs, so two runs on two cores do not each spin two threads (oversubscribed,
    both run slower than one at a time)."""
    return max(1, (os.cpu_count() or 1) * taken // per_device)


def studies_here(runs_dir: Path) -> bool:
    """Whether the runs directory has searches to tend (cheap: Optuna loads only then)."""
    d = runs_dir / ".cockpit" / "studies"
    return d.is_dir() and any(d.glob("*.json"))


def workers_dir(runs_dir: Path) -> Path:
    d = runs_dir / ".cockpit" / "workers"
    d.mkdir(parents=True, exist_ok=True)
    return d


def remote_host(w: dict) -> str | None:
    """The host of a worker file's worker when that is another machine, else None."""
    host = w.get("host")
    return host if host and host != this_host() else None


def live_workers(runs_dir: Path) -> list[dict]:
    """Every worker whose process is alive and whose heartbeat is fresh; another machine's by
    its heartbeat alone."""
    out = []
    d = runs_dir / ".cockpit" / "workers"
    for f in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            w = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        proc = Proc.from_dict(w.get("proc"))
        age = time.time() - w.get("heartbeat", 0)
        if remote_host(w):
            if age < REMOTE_STALE_S:
                out.append(w)
        elif proc is not None and proc.alive() and age < HEARTBEAT_STALE_S:
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
                 threshold: float = 10.0, grace: float = 300.0, log=print, slots: int = 1):
        self.runs_dir, self.once, self.log = runs_dir, once, log
        self.per_device = slots  # runs each device may hold at once (--slots)
        self.queue = Queue(runs_dir, warn=lambda m: log(f"warning: {m}"))
        self.devices = [str(g) for g in gpus] if gpus else ["cpu"]
        self.slots: list[Slot] = []  # the runs this worker is training
        self.gpus = GpuMonitor()
        self.keepawake = KeepAwake(threshold, grace)
        self.stop = threading.Event()
        self.me = Proc.me("worker")
        self.host = this_host()
        self.file = workers_dir(runs_dir) / f"{self.host}-{self.me.pid}.json"
        self._locks = []
        self._said: set[str] = set()
        self._recovered_at = 0.0
        self.recovered = 0.0  # wall time of the last recovery pass, in the worker's file
        try:
            self.notify = notify.load()  # [notify] of the user's settings: failed, completed, drained
        except notify.NotifyError as e:
            raise WorkerBusy(str(e)) from None
        self._trained = False  # a run was started since the queue last drained

    # -- ownership ----------------------------------------------------------------------
    def check_gpus(self) -> None:
        """--gpus names devices this machine has (NVML, or COCKPIT_FAKE_GPUS for tests)."""
        wanted = [int(d) for d in self.devices if d != "cpu"]
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

    def check_alone(self) -> None:
        """No worker of another machine serves this runs directory: the locks that keep two
        workers from starting one run do not reach across machines."""
        for w in live_workers(self.runs_dir):
            host = remote_host(w)
            if host:
                raise WorkerBusy(f"{self.runs_dir}: a worker on {host} (pid {w.get('pid')}) serves this runs directory; "
                                 f"run one worker per runs directory, on one machine (stop that one, or give this "
                                 f"machine its own --runs-dir)")

    def lock_slots(self) -> None:
        for device in self.devices:
            try:
                self._locks.append(acquire(self.queue.dir / f"worker-{device}.lock", timeout=0))
            except LockHeld as e:
                raise WorkerBusy(f"another worker ({e.holder}) owns the {device_label([device])}; only one worker may use "
                                 f"it (cockpit status lists the workers)") from None

    def log_once(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self.log(message)

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
            if state is None or state.status != RUNNING or self.owns(state) or state.elsewhere():
                continue  # (another machine's run: only that machine can tell whether its engine lives)
            owner = state.owner_proc()
            owner_alive = owner is not None and owner.alive()
            if engine_alive(rd, state):
                if owner_alive or (owner is not None and owner.kind != "worker"):
                    continue  # its owner (another worker, a headless CLI) is alive, or it is not a worker's
                devices = (state.slot or "cpu").split(",")
                if set(devices) <= set(self.free(min(slots_wanted(rd), self.per_device))):
                    self.adopt(devices, rd, state)
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

    def used(self, device: str) -> int:
        return sum(s.taken for s in self.slots if device in s.devices)

    def free(self, take: int = 1) -> list[str]:
        """The devices with ``take`` slots still free."""
        return [d for d in self.devices if self.per_device - self.used(d) >= take]

    def adopt(self, devices: list[str], rd: RunDir, state: RunState) -> None:
        old = state.owner

        def take(s: RunState) -> None:
            if s.status != RUNNING or s.owner != old or s.pid != state.pid:
                raise StateError(f"{rd.id} changed meanwhile")
            s.owner = self.me.to_dict()

        try:
            state = rd.modify(take)
        except StateError:
            return
        slot = Slot(devices, rd, None, state, state.launch, taken=min(slots_wanted(rd), self.per_device))
        self.slots.append(slot)
        self.log(f"adopted {rd.id}: its engine (pid {state.pid}) is still training on the {slot.label}")

    def requeue(self, rd: RunDir, state: RunState) -> bool:
        """An interrupted run goes back to the front of the queue, unless it keeps dying."""
        step = state.step
        if not should_resume(state):
            self.log(f"{rd.id} was interrupted again at step {step} without progress; not resuming it "
                     f"(cockpit queue retry {rd.id} to try again)")
            return False
        try:
            rd.transition("requeue", reason="")
        except StateError:
            return False
        self.log(f"{rd.id} was interrupted; it resumes from step {step} ahead of the queue")
        return True

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> int:
        self.check_gpus()
        # announce first, then look: of two machines' workers starting at once, one at least sees the other
        self.write_status(alive=True)
        try:
            self.check_alone()
            self.lock_slots()
        except WorkerBusy:
            self.file.unlink(missing_ok=True)
            raise
        self.recover()
        from watchfiles import watch

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        self.log(f"worker {os.getpid()} on {', '.join(device_label([d]) for d in self.devices)}; "
                 f"waiting for queued runs")
        try:
            self.tick()
            for _ in watch(self.queue.dir, stop_event=self.stop, yield_on_timeout=True, rust_timeout=1000,
                           debounce=50, raise_interrupt=False,
                           watch_filter=lambda change, path: not path.endswith((".tmp", ".lock"))):
                if self.tick():
                    break
        finally:
            self.keepawake.close()
            busy = [s.rd.id for s in self.slots]
            self.file.unlink(missing_ok=True)
            if busy:
                self.log(f"worker leaving; still training on their own: {', '.join(busy)} "
                         f"(a new worker for the same device adopts them)")
        return 0

    def tick(self) -> bool:
        """One round: reap, recover, sample, keep awake, start runs. True when --once is done."""
        for slot in list(self.slots):
            self.reap(slot)
        if time.monotonic() - self._recovered_at >= RECOVER_EVERY_S:
            self.recover()
        snap = self.gpus.snapshot()
        atomic_write(self.queue.dir / "gpus.json", json.dumps({**snap, "time": time.time()}))
        running = bool(self.slots)
        utils = [g["util"] for g in snap["gpus"]] if snap["available"] else None
        ka = self.keepawake.update(utils, running)
        atomic_write(self.queue.dir / "keepawake.json", json.dumps(ka))
        if studies_here(self.queue.runs_dir):  # searches: tell what ended, prune, top them up
            from cockpit.study import tend

            tend(self.queue.runs_dir, self.log)
        while self.free() and not self.stop.is_set():
            pick = Picker(self)
            rd = self.queue.next_ready(skip=lambda run_id, why: self.log(f"skipped {run_id}: {why}"), accept=pick)
            if rd is None:
                break
            self.launch(pick.chosen, rd, filler=pick.filler, taken=pick.take)
        self.write_status(alive=True)
        idle = not self.slots
        if idle and self._trained and (not self.queue.order or not self.queue.can_progress()):
            self._trained = False  # once per drain: the next run started arms it again
            left = len(self.queue.order)
            notify.fire(self.notify, "drained", reason=f"{left} queued run(s) held or waiting on stopped runs"
                        if left else "", log=self.log)
            self.log("the queue is drained" + (f"; {left} run(s) held or waiting on stopped runs" if left else ""))
        if not (self.once and idle):
            return False
        if not self.queue.order or self.queue.paused:
            return True
        if not self.queue.can_progress():  # what is left waits on stopped runs: only the user can move it
            self.log(f"--once: {len(self.queue.order)} queued run(s) are held (queue resume RUN) or wait on "
                     f"stopped runs; resume those, then start a worker again")
            return True
        return False

    def launch(self, devices: list[str], rd: RunDir, filler: bool = False, taken: int = 1) -> None:
        """Claim the run (queued -> running, compare-and-set: a stop that came first wins) and
        start its engine on these devices."""
        slot = Slot(devices, rd, filler=filler, taken=taken)
        try:
            launch = claim(rd, self.me, expected=QUEUED, slot=slot.name)
        except StateError as e:
            self.log(f"not starting {rd.id}: {e}")
            return
        if not filler:  # the head started: the runs that filled its gaps are ordinary runs now
            for other in self.slots:
                other.filler = False
        env = {"CUDA_VISIBLE_DEVICES": slot.name} if devices != ["cpu"] else {}
        if devices == ["cpu"] and self.per_device > 1:
            threads = str(cpu_threads(taken, self.per_device))
            env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        try:
            proc = start_engine(rd, launch, env)
        except OSError as e:
            self.log(f"could not start {rd.id}: {e}")
            rd.transition("fail", expected=RUNNING, reason=f"could not start the engine: {e}")
            return
        slot.proc, slot.launch = proc, launch
        self.slots.append(slot)
        self._trained = True
        share = f" (slot {self.used(devices[0])}/{self.per_device})" if self.per_device > 1 else ""
        self.log(f"started {rd.id} (pid {proc.pid}) on the {slot.label}{share}" + (" (filling a gap)" if filler else ""))

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
            self.slots.remove(slot)
            return
        self.log(f"{rd.id}: {state.status}" + (f" ({state.reason})" if state.reason else ""))
        self.slots.remove(slot)
        if state.status in (COMPLETED, FAILED):
            notify.fire(self.notify, state.status, rd.id, str(rd.path), state.status, state.reason, self.log)
            ablate.on_run_end(rd, self.queue.runs_dir, self.log)  # the last run of an ablation: its findings
        if state.status == INTERRUPTED and self.requeue(rd, state):
            self.queue.push_front([rd.id])

    def write_status(self, alive: bool) -> None:
        atomic_write(self.file, json.dumps({
            "proc": self.me.to_dict(), "pid": self.me.pid, "host": self.host, "alive": alive, "heartbeat": time.time(),
            "recovered": self.recovered,
            "slots": [self._device_status(d) for d in self.devices]}))

    def _device_status(self, device: str) -> dict:
        held = [s for s in self.slots if device in s.devices]
        s = held[0] if held else None
        return {"slot": device, "run": s.rd.id if s else None,
                "pid": (s.proc.pid if s.proc else s.state.pid if s.state else None) if s else None,
                "runs": [x.rd.id for x in held], "capacity": self.per_device, "used": self.used(device)}


class Picker:
    """Chooses, in queue order, the run to start on the free devices (see the module's
    docstring for the policy); ``chosen`` and ``filler`` say where and how it starts."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self.head_needs: int | None = None  # set when the first ready run has to wait
        self.fillers = sum(len(s.devices) for s in worker.slots if s.filler)
        self.chosen: list[str] = []
        self.filler = False
        self.take = 1

    def __call__(self, rd: RunDir) -> bool:
        devices = self.worker.devices
        need = 1 if devices == ["cpu"] else gpus_wanted(rd)  # on the CPU, a run's ranks share it
        self.take = min(slots_wanted(rd), self.worker.per_device)  # more than a device has: all of it
        self.free = self.worker.free(self.take)
        if need > len(devices):
            if self.head_needs is None:
                self.worker.log_once(rd.id, f"{rd.id} asks for {need} GPUs; this worker has {len(devices)} "
                                            f"({','.join(devices)}): it waits for a worker with enough")
            return False
        if self.head_needs is None:
            if need <= len(self.free):
                self.chosen = self.free[:need]
                return True
            self.head_needs = need
            return False
        if need <= len(self.free) and len(devices) - (self.fillers + need) >= self.head_needs:
            self.chosen, self.filler = self.free[:need], True
            return True
        return False


def start_worker(runs_dir: Path) -> subprocess.Popen:
    """A ``cockpit worker --once`` of its own (its own session, output to
    runs/.cockpit/worker.log), so closing the TUI never stops training."""
    q = Queue(runs_dir)
    with open(q.dir / "worker.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "cockpit", "--runs-dir", str(runs_dir), "worker", "--once"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
