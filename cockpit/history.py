"""A run's history as the TUI needs it: metric series against step, the current numbers,
the latest sample. Read incrementally from events.jsonl, so a refresh costs only the lines
appended since the last one, and held in bounded memory: each series keeps at most
``Series.cap`` points, averaging neighbours as it grows (a million steps cost what a
thousand do). Pure Python and torch-free; the TUI polls it from worker threads.
"""

from __future__ import annotations

import collections
import statistics
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from runspec.config.plan import phase
from runspec.run import events
from runspec.run.metrics import FINAL_BPB, FINAL_LOSS, STEP_MS, TOKENS, TOKENS_PER_S, VAL_BPB, VAL_LOSS
from runspec.run.rundir import BROKEN, RunDir, RunState, StateError

READ_CHUNK = 4 << 20  # bytes of events.jsonl parsed per step of a catch-up read


class Series:
    """(step, value) points, at most ``cap`` of them. Past the cap, adjacent pairs are
    averaged into one and later points are averaged over twice as many steps, so the
    curve keeps its shape at any length; ``last`` is always the newest raw point."""

    def __init__(self, cap: int = 512):
        self.cap = cap
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.stride = 1
        self._acc_x = self._acc_y = 0.0
        self._acc_n = 0
        self.last: tuple[float, float] | None = None

    def add(self, x: float, y: float) -> None:
        self.last = (x, y)
        self._acc_x += x
        self._acc_y += y
        self._acc_n += 1
        if self._acc_n < self.stride:
            return
        self.xs.append(self._acc_x / self._acc_n)
        self.ys.append(self._acc_y / self._acc_n)
        self._acc_x = self._acc_y = 0.0
        self._acc_n = 0
        if len(self.xs) >= self.cap:
            self.xs = [(self.xs[i] + self.xs[i + 1]) / 2 for i in range(0, len(self.xs) - 1, 2)]
            self.ys = [(self.ys[i] + self.ys[i + 1]) / 2 for i in range(0, len(self.ys) - 1, 2)]
            self.stride *= 2

    def points(self) -> tuple[list[float], list[float]]:
        """A copy for plotting, ending at the newest raw point."""
        xs, ys = list(self.xs), list(self.ys)
        if self.last is not None and (not xs or xs[-1] != self.last[0]):
            xs.append(self.last[0])
            ys.append(self.last[1])
        return xs, ys




def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None  # "nan"/"inf" arrive as strings (JSON has neither); a chart skips them
    return float(v)


def eta_s(step: int, max_steps: int, latest: dict[str, float], recent_ms: list[float] | None = None) -> float | None:
    """Seconds left, at the median of the recent step times when given (one slow step, an eval
    or a checkpoint made the newest-step estimate jump 0:13 → 0:49 → 0:07), else the newest."""
    step_ms = statistics.median(recent_ms) if recent_ms else latest.get(STEP_MS)
    return max(0, max_steps - step) * step_ms / 1000 if step_ms and max_steps else None


def quiet_after_s(gaps: list[float]) -> float:
    """How long a running engine may stay silent before the TUI flags it: several of its usual
    gaps between step events, and never less than a minute (evals and checkpoints are slower)."""
    return max(60.0, 5 * statistics.median(gaps)) if gaps else 120.0


@dataclass
class RunView:
    """An immutable-by-convention copy of what the Training tab draws, made off the UI thread."""

    id: str
    state: RunState
    series: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    latest: dict[str, float] = field(default_factory=dict)
    step: int = 0
    max_steps: int = 0
    start: dict = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    sample: tuple[int, str] | None = None
    error: str = ""
    events: int = 0
    stage: int = 0  # the stage in force (0: the run's own shape)
    stages: int = 0  # how many [[stage]] entries the run has
    stage_marks: list[int] = field(default_factory=list)  # steps where a stage begins (chart markers)
    phase: str = ""  # 'k/n' of the run's phases ([[stage]] entries, plus its own shape before the first)
    parent: str = ""  # "RUN:STEP" this run was initialised from
    last_time: float = 0.0  # when the newest event was written (time.time())
    wall_s: float = 0.0  # engine time, summed over launches
    gaps: list[float] = field(default_factory=list)  # recent seconds between step events
    progress: str = ""  # 'final pass 40% of 300,000 tokens' while a pass runs after training
    cores: int | None = None  # a CPU run's cores (busy_note)


class RunHistory:
    def __init__(self, rd: RunDir, cap: int = 512):
        self.rd = rd
        self.cap = cap
        self.reader = events.EventReader(rd.events)
        self.series: dict[str, Series] = {}
        self.latest: dict[str, float] = {}
        self.step = 0
        self.max_steps = 0
        self.start: dict = {}
        self.final: dict[str, float] = {}
        self.sample: tuple[int, str] | None = None
        self.error = ""
        self.events = 0
        self.stage = self.stages = 0
        self.stage_params: int | None = None
        self.progress = ""  # 'final pass 40% of 300,000 tokens' while one runs after training
        self.stage_marks: list[int] = []
        self.first_start: int | None = None  # the first [[stage]]'s step, from the start event
        self.parent = ""
        self.cores: int | None = None  # a CPU run's cores (its start event's thread plan): busy_note reads it
        # wall clock: each engine launch (start event) to its last event, summed over resumes
        self.last_time = 0.0
        self.wall_s = 0.0
        self.gaps: collections.deque[float] = collections.deque(maxlen=20)
        self._last_step_time = 0.0
        self._segment = (0.0, 0.0)  # (launch's start time, wall time before it)
        self.lock = threading.Lock()  # the queue and training tabs may poll the same run

    # -- the run at a glance: the one place for these fallbacks, read by status, the Queue
    # tab, sweep status, compare and the scaling points alike
    @property
    def val_loss(self) -> float | None:
        """The final validation loss, else the latest running one."""
        return self.final.get(FINAL_LOSS, self.latest.get(VAL_LOSS))

    @property
    def val_bpb(self) -> float | None:
        return self.final.get(FINAL_BPB, self.latest.get(VAL_BPB))

    @property
    def tokens(self) -> int | None:
        """Tokens trained: the engine's own count, else steps times the tokens of a step."""
        if self.latest.get(TOKENS) is not None:
            return int(self.latest[TOKENS])
        per_step = self.start.get("tokens_per_step")
        return self.step * int(per_step) if per_step else None

    @property
    def phase(self) -> str:
        """'2/2' once a run grew at its one [[stage]]; '' for a run without stages."""
        return phase(self.stage, self.stages, self.first_start)

    def median_tokens_per_s(self) -> float | None:
        rates = self.series[TOKENS_PER_S].points()[1] if TOKENS_PER_S in self.series else []
        return statistics.median(rates) if rates else None

    def _metrics(self, step: int, metrics: dict) -> None:
        for name, value in metrics.items():
            v = _number(value)
            if v is None:
                continue
            s = self.series.get(name)
            if s is None:
                s = self.series[name] = Series(self.cap)
            s.add(step, v)
            self.latest[name] = v

    def _apply(self, ev: events.Event) -> None:
        self.events += 1
        if ev.kind == events.START or not self._segment[0]:
            self._segment = (ev.time, self.wall_s)
        self.wall_s = self._segment[1] + max(0.0, ev.time - self._segment[0])
        self.last_time = ev.time
        if ev.kind == events.STEP:
            if self._last_step_time:
                self.gaps.append(max(0.0, ev.time - self._last_step_time))
            self._last_step_time = ev.time
        elif ev.kind == events.START:
            self._last_step_time = 0.0
        if ev.step is not None:
            self.step = ev.step
        if ev.kind == events.START:
            self.start = {k: v for k, v in ev.data.items() if not isinstance(v, (dict, list))}
            cpu = ev.get("cpu")
            self.cores = cpu.get("cores") if isinstance(cpu, dict) else None
            self.max_steps = ev.get("max_steps", self.max_steps)
            self.stages = int(ev.get("stages", 0) or 0)
            self.stage = int(ev.get("stage", 0) or 0)
            starts = ev.get("stage_starts")
            if isinstance(starts, list):  # known from the config: the markers are there before the stages
                self.stage_marks = sorted({int(s) for s in starts if isinstance(s, int) and s > 0})
                self.first_start = min((int(s) for s in starts if isinstance(s, int)), default=None)
            parent = ev.get("init_from")
            if isinstance(parent, dict) and parent.get("ref"):
                name = str(parent["ref"]).rstrip("/").rsplit("/", 1)[-1].split(":")[0]
                self.parent = f"{name}:{parent.get('step')}"
        elif ev.kind in (events.STEP, events.EVAL):
            self.max_steps = ev.get("max_steps", self.max_steps)
            self._metrics(ev.step or 0, ev.metrics)
            if isinstance(ev.get("stage"), int):
                self.stage = ev.get("stage")
        elif ev.kind == events.STAGE:
            self.stage = int(ev.get("stage", self.stage) or 0)
            self.stages = int(ev.get("stages", self.stages) or 0)
            if ev.get("params"):
                self.stage_params = int(ev.get("params"))  # the size after the change (a grown run is bigger)
            if ev.step and not ev.get("restart") and ev.step not in self.stage_marks:
                self.stage_marks = sorted([*self.stage_marks, ev.step])
        elif ev.kind == events.PROGRESS:
            total = int(ev.get("total") or 0)
            self.progress = (f"{ev.get('what', 'pass')} pass {int(ev.get('done') or 0) / total:.0%} of "
                             f"{int(ev.get('tokens') or 0):,} tokens") if total else ""
        elif ev.kind == events.FINAL:
            self.progress = ""
            self.final = {k: v for k, v in ev.metrics.items() if _number(v) is not None}
        elif ev.kind == events.SAMPLE and isinstance(ev.get("text"), str):
            self.sample = (ev.step or 0, ev.get("text"))
        elif ev.kind == events.ERROR:
            self.error = str(ev.get("reason", ""))

    def poll(self, max_chunks: int | None = None, on_event: Callable[[events.Event], None] | None = None) -> int:
        """Read what was appended since the last poll (in bounded chunks). Returns the number
        of new events; ``on_event`` sees each one just after it is applied."""
        n = 0
        with self.lock:
            chunks = 0
            while True:
                new = self.reader.read_new(READ_CHUNK)
                for ev in new:
                    self._apply(ev)
                    if on_event is not None:
                        on_event(ev)
                n += len(new)
                chunks += 1
                if self.reader.caught_up or (max_chunks is not None and chunks >= max_chunks):
                    return n

    def view(self, state: RunState | None = None, names: list[str] | None = None) -> RunView:
        with self.lock:
            wanted = self.series if names is None else {k: self.series[k] for k in names if k in self.series}
            return RunView(self.rd.id, state if state is not None else self._state(),
                           {k: s.points() for k, s in wanted.items()}, dict(self.latest), self.step,
                           self.max_steps, dict(self.start), dict(self.final), self.sample, self.error, self.events,
                           self.stage, self.stages, list(self.stage_marks), self.phase, self.parent,
                           self.last_time, self.wall_s, list(self.gaps), self.progress, self.cores)


    def _state(self) -> RunState:
        try:
            return self.rd.read_state()
        except StateError as e:  # a view of the events is still worth showing
            return RunState(status=BROKEN, reason=str(e))


class Histories:
    """One RunHistory per run directory, shared by the tabs (each is read once)."""

    def __init__(self) -> None:
        self._by_path: dict[Path, RunHistory] = {}
        self._lock = threading.Lock()

    def get(self, rd: RunDir) -> RunHistory:
        key = rd.path.resolve()
        with self._lock:
            h = self._by_path.get(key)
            # a run directory that was deleted and created again starts a new history
            if h is None or h.reader.offset > _size(rd.events):
                h = self._by_path[key] = RunHistory(rd)
            return h


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
