"""How many threads a CPU run trains with, and how they wait, on a machine other jobs share.

torch's CPU kernels run on an OpenMP team whose idle members spin for a while before they sleep.
On cores of its own that spinning is what makes small kernels fast; on cores other processes
also want, a spinning thread holds a core the thread it waits for needs, and every one of the
hundreds of parallel regions of a step pays a time slice. Measured on a 2-core machine at the
quickstart's shape (docs/benchmarks.md, "A busy machine"): 80 ms a step idle; beside two
CPU-bound processes 445 ms with 2 spinning threads, 223 ms with one thread and 158 ms with 2
threads that wait passively; passive waiting costs about 15% on an idle machine.

So the engine decides before torch is imported (OpenMP reads its wait policy once, when torch
loads it), from what other processes are doing on the cores this process may use:

- threads: the cores this process may use (affinity, capped by a cgroup CPU quota) less the
  ones other processes keep busy (at least one); all of them when other processes want every
  core (each thread then gets its fair share, which beats one thread);
- wait policy: passive (``OMP_WAIT_POLICY=PASSIVE``) when other processes want at least half a
  core, else OpenMP's own (spin, then sleep).

While training, a :class:`Governor` samples the demand every few seconds and moves the thread
count when other processes come or go (twice in a row the same answer, so a passing burst
changes nothing). ``[train] threads = N`` pins N threads (no adapting); an ``OMP_NUM_THREADS``
given to the engine (a worker's slots, torchrun's ranks) is the most it takes. Changing the
thread count changes the order of float reductions (a resumed run matches to ~1e-7, not
bit for bit); pin ``threads`` where bit-exact reruns matter.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BUSY_CORES = 0.5  # other processes' demand (cores) from which the machine counts as shared
START_SAMPLE_S = 0.15  # how long the engine looks at the machine before torch loads
GOVERNOR_EVERY_S = 2.0  # between two looks while training


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity), else every CPU."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _cgroup_dirs() -> list[Path]:
    """This process's cgroup directories, innermost first (v2 unified, else v1's cpu controller)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            base = Path("/sys/fs/cgroup")
        elif "cpu" in controllers.split(","):
            base = Path("/sys/fs/cgroup") / controllers
            if not base.exists():
                base = Path("/sys/fs/cgroup/cpu")
        else:
            continue
        here = base / path.lstrip("/")
        while True:
            out.append(here)
            if here == base:
                break
            here = here.parent
    return out


def cgroup_quota() -> float | None:
    """The CPU quota of this process's cgroups in cores (the tightest), or None when unlimited."""
    best = None
    for d in _cgroup_dirs():
        try:
            if (d / "cpu.max").exists():
                quota, period = (d / "cpu.max").read_text().split()[:2]
                if quota == "max":
                    continue
                cores = int(quota) / int(period)
            elif (d / "cpu.cfs_quota_us").exists():
                quota = int((d / "cpu.cfs_quota_us").read_text())
                if quota <= 0:
                    continue
                cores = quota / int((d / "cpu.cfs_period_us").read_text())
            else:
                continue
        except (OSError, ValueError):
            continue
        best = cores if best is None else min(best, cores)
    return best


def available_cores() -> int:
    """Cores this process may keep busy: its affinity, capped by a cgroup quota (rounded down,
    at least one: a 1.5-core quota throttles a second thread half of every period)."""
    n = len(allowed_cpus())
    quota = cgroup_quota()
    if quota is not None:
        n = min(n, max(1, int(quota)))
    return max(1, n)


class DemandMeter:
    """What other processes want of this process's CPUs, in cores, between two calls.

    On Linux, when this process may use every CPU of the machine, it counts runnable tasks
    (/proc/stat's procs_running, less this process's own running threads): a demand that does
    not shrink when this process takes the cores (CPU time would: a squeezed job uses less).
    Elsewhere (a cpuset, another OS) it is the busy time of the allowed CPUs less this
    process's own CPU time, which is right while this process is idle (at start) and low
    when it competes."""

    def __init__(self) -> None:
        self.cpus = allowed_cpus()
        self.whole_machine = Path("/proc/stat").exists() and len(self.cpus) == (os.cpu_count() or 0)
        self._busy = self._own = self._at = 0.0
        self._counts: list[float] = []
        self.reset()

    # -- runnable tasks (Linux, whole machine) ---------------------------------------------------
    @staticmethod
    def _procs_running() -> int | None:
        try:
            with open("/proc/stat", "rb") as f:
                for line in f:
                    if line.startswith(b"procs_running"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    @staticmethod
    def _own_running() -> int:
        n = 0
        for task in Path("/proc/self/task").iterdir():
            try:
                stat = (task / "stat").read_bytes()
            except OSError:
                continue
            if stat[stat.rindex(b")") + 2: stat.rindex(b")") + 3] == b"R":
                n += 1
        return n

    def count(self) -> None:
        """One look at the runnable tasks (cheap: two /proc reads); ``others`` averages them."""
        if not self.whole_machine:
            return
        total = self._procs_running()
        if total is not None:
            self._counts.append(max(0, total - self._own_running()))

    # -- CPU time (anywhere psutil works) -------------------------------------------------------
    def _times(self) -> tuple[float, float]:
        import psutil

        per = psutil.cpu_times(percpu=True)
        busy = 0.0
        for i in self.cpus:
            if i < len(per):
                t = per[i]
                busy += sum(t) - t.idle - getattr(t, "iowait", 0.0)
        own = psutil.Process().cpu_times()
        return busy, own.user + own.system

    def reset(self) -> None:
        self._counts = []
        try:
            self._busy, self._own = self._times()
        except Exception:  # psutil cannot read this system's times: no figure, no adapting
            self._busy = self._own = float("nan")
        self._at = time.monotonic()

    def others(self) -> float | None:
        """Other processes' demand since the last reset, in cores (None when unknown); resets."""
        if self._counts:
            value: float | None = sum(self._counts) / len(self._counts)
        else:
            try:
                busy, own = self._times()
            except Exception:
                busy = own = float("nan")
            wall = time.monotonic() - self._at
            value = max(0.0, ((busy - self._busy) - (own - self._own)) / wall) if wall > 0 else None
            if value is not None and value != value:  # nan
                value = None
        self.reset()
        return value


def wanted(cores: int, others: float | None, most: int, passive: bool) -> int:
    """Threads for a run that may take ``most`` of ``cores`` cores while other processes want
    ``others`` of them: the free cores (at least one); with every core wanted, all of them if
    the threads wait passively (each gets its fair share) and one if they spin (a spinning
    thread on a shared core stalls the team: 445 ms a step against 223 for one thread)."""
    if others is None:
        return most
    free = cores - others
    if free >= 0.5:
        return max(1, min(most, round(free)))
    return most if passive else 1


@dataclass
class ThreadPlan:
    """The engine's choice, recorded in the start event."""

    threads: int  # intra-op threads to start with
    most: int  # the most it may take (config, OMP_NUM_THREADS or the cores)
    cores: int  # cores this process may use (affinity, cgroup quota)
    others: float | None  # other processes' demand at start, in cores
    passive: bool  # OMP_WAIT_POLICY=PASSIVE (set here, or given)
    source: str  # "config" ([train] threads), "env" (OMP_NUM_THREADS) or "auto"

    @property
    def adapts(self) -> bool:
        return self.source != "config"

    def describe(self) -> str:
        """The log line at start when the run takes fewer threads than it may ('' otherwise):
        a run started on a busy machine says so once, as a change mid-run does."""
        if self.threads >= self.most or self.others is None:
            return ""
        return (f"{self.threads} CPU thread{'s' if self.threads != 1 else ''} of {self.most}: other processes want "
                f"{self.others:.1f} of {self.cores} cores")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["others"] = None if self.others is None else round(self.others, 2)
        return d


def plan(config_threads: int, env: dict | None = None, sample_s: float = START_SAMPLE_S) -> ThreadPlan:
    """Look at the machine for ``sample_s`` and decide; sets OMP_WAIT_POLICY in ``env``
    (os.environ by default) when passive waiting is chosen. Call before torch is imported."""
    env = os.environ if env is None else env
    cores = available_cores()
    meter = DemandMeter()
    deadline = time.monotonic() + sample_s
    while time.monotonic() < deadline:
        meter.count()
        time.sleep(sample_s / 8)
    others = meter.others()
    # a wait the user (or a benchmark) set, as a policy or as libgomp's spin count, is theirs
    given_policy = env.get("OMP_WAIT_POLICY", "").strip().upper() or ("SPIN" if env.get("GOMP_SPINCOUNT") else "")
    passive = given_policy == "PASSIVE" or (not given_policy and others is not None and others >= BUSY_CORES)
    if passive and not given_policy:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if config_threads > 0:
        return ThreadPlan(config_threads, config_threads, cores, others, passive, "config")
    if omp.isdigit() and int(omp) > 0:
        most, source = int(omp), "env"
    else:
        most, source = cores, "auto"
    return ThreadPlan(wanted(cores, others, most, passive), most, cores, others, passive, source)


class Governor:
    """Samples other processes' demand in a background thread; the training loop asks
    :meth:`advice` between steps (threads are only ever changed on the training thread)."""

    def __init__(self, p: ThreadPlan, every_s: float = GOVERNOR_EVERY_S):
        self.plan, self.every_s = p, every_s
        self.current = p.threads
        self.others: float | None = p.others
        self._proposal: int | None = None
        self._advice: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="cpu-governor", daemon=True)

    def start(self) -> "Governor":
        if self.plan.adapts:
            self._thread.start()
        return self

    def _watch(self) -> None:
        meter = DemandMeter()
        looks = 10
        while not self._stop.wait(self.every_s / looks):
            meter.count()
            looks -= 1
            if looks:
                continue
            looks = 10
            others = meter.others()
            want = wanted(self.plan.cores, others, self.plan.most, self.plan.passive)
            with self._lock:
                self.others = others
                # the same answer twice in a row: a burst of another process changes nothing
                if want != self.current and want == self._proposal:
                    self._advice = want
                self._proposal = want

    def advice(self) -> int | None:
        """A new thread count to apply now, or None; the caller applies it and calls :meth:`applied`."""
        with self._lock:
            a, self._advice = self._advice, None
        return a if a is not None and a != self.current else None

    def applied(self, threads: int) -> None:
        with self._lock:
            self.current = threads

    def describe(self, new: int) -> str:
        """The log line of a change from the current count to ``new``."""
        why = f"other processes want {self.others:.1f} of {self.plan.cores} cores" if self.others is not None else \
            "the machine's load is unknown"
        return f"{new} CPU thread{'s' if new != 1 else ''} instead of {self.current}: {why}"

    def close(self) -> None:
        self._stop.set()
