"""A run directory, its state.json and run.json: the one place both halves agree on a run's files.

state.json has one owner: every change is a compare-and-set under a per-run lock
(``transition(new, expected=...)``), so the CLI, the TUI, the worker and the engine can never
overwrite each other; a change from an unexpected state is refused with a one-line
``StateConflict``. The file is always replaced atomically (write a temp file, fsync, rename),
so a reader never sees half of it, and every transition is appended to ``history`` with a
timestamp and, for failures, a one-line reason. run.json holds what a run *is* as data (tags,
sweep, overrides, parent, dependencies, GPUs); it is written once, when the run is created.
Torch-free.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from runspec.config.load import config_from_dict
from runspec.config.schema import ConfigError, RunConfig, tomllib
from runspec.fs import acquire, atomic_write
from runspec.run import lifecycle
from runspec.run.lifecycle import (  # noqa: F401 (the vocabulary)
    BROKEN,
    COMPLETED,
    FAILED,
    FINISHED,
    INTERRUPTED,
    QUEUED,
    RETRYABLE,
    RUNNING,
    STATES,
    STOPPED,
)
from runspec.run.process import Proc, this_host

LAUNCH_ENV = "COCKPIT_LAUNCH"  # the launcher (worker, CLI) that claimed a run hands its engine this token
MAX_ID_LEN = 80  # run ids are directory names: keep them well under NAME_MAX with the suffixes


class StateError(ValueError):
    """A run's state cannot be read or changed as asked; one line naming the run."""


class StateConflict(StateError):
    """The state is not what the change expected (someone else changed it first)."""


class StateDamaged(StateError):
    """state.json is missing or not a state (truncated, edited by hand)."""


class RunGone(StateError):
    """The run directory no longer exists (removed meanwhile)."""


@dataclass
class RunState:
    status: str = QUEUED
    reason: str = ""
    pid: int | None = None  # the engine (or, under torchrun, its launcher)
    pid_start: str | None = None  # when that pid started: identifies the process, not just the number
    owner: dict | None = None  # Proc of whoever launched the engine: a worker, the CLI
    host: str | None = None  # the machine the engine (and its owner) run on: their pids mean nothing elsewhere
    slot: str | None = None  # the worker slot (cpu, or GPU indices) the run holds
    launch: str | None = None  # token handed to the engine it started (COCKPIT_LAUNCH)
    stop_requested: bool = False  # a stop asked for before the engine could be signalled
    stop_reason: str = ""  # why a stop was asked for (a search's pruner): the engine records it as the reason
    step: int = 0
    max_steps: int = 0
    exit_code: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunState":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        state = cls(**known)
        if state.status not in STATES or not isinstance(state.history, list):
            raise ValueError(f"status {state.status!r}")
        return state

    def move(self, verb: str, reason: str = "", **updates: Any) -> None:
        """Make the lifecycle move ``verb`` on this (locked, about to be written) state; a move
        the lifecycle table does not allow from the current state is an IllegalMove."""
        m = lifecycle.move(verb)
        if self.status not in m.sources:
            raise lifecycle.IllegalMove(f"{verb!r} cannot start from {self.status} "
                                        f"(it starts from {', '.join(m.sources)})")
        status = self.status = m.target
        self.reason = one_line(reason)
        for key, value in updates.items():
            setattr(self, key, value)
        entry: dict[str, Any] = {"status": status, "time": round(time.time(), 3), "step": self.step}
        if self.reason:
            entry["reason"] = self.reason
        if status == RUNNING and self.slot:  # which devices a launch held (cpu, or GPU indices)
            entry["slot"] = self.slot
        self.history.append(entry)

    def elsewhere(self) -> bool:
        """The run was launched on another machine (a shared runs directory): this one can
        neither see its processes nor signal them."""
        return bool(self.host) and self.host != this_host()

    def engine(self) -> Proc | None:
        """The recorded engine process, or None before it started."""
        return Proc(self.pid, self.pid_start or "", "engine") if self.pid else None

    def owner_proc(self) -> Proc | None:
        return Proc.from_dict(self.owner)

    @property
    def updated(self) -> float:
        return self.history[-1]["time"] if self.history else 0.0


@dataclass
class RunMeta:
    """What a run is, as data (run.json): for sweeps, comparisons, stages and the worker."""

    name: str = ""
    config_source: str = ""  # the file the user submitted
    created: float = 0.0
    tags: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted key -> value, as given with --set
    sweep: str | None = None  # the sweep this run belongs to
    sweep_values: dict[str, Any] = field(default_factory=dict)  # the varied keys and this run's values
    parent: str | None = None  # the run whose weights this one starts from
    parent_step: int | None = None
    depends_on: list[str] = field(default_factory=list)  # runs that must complete before this one starts
    gpus: int = 1  # devices the run asks the worker for
    trial: int | None = None  # a search's trial number (cockpit.study): the study finds its run by it

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunMeta":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


Expected = str | tuple[str, ...] | None
ANY_STATE = object()  # update(): no expectation about the current state


def _expected_text(expected: Expected) -> str:
    if expected is None:
        return "no state yet"
    return expected if isinstance(expected, str) else " or ".join(expected)


# what each file of a run directory holds (the docs' run-directory page is generated from this)
FILES = {
    "config.toml": "the file you submitted, with any --set overrides appended as comments",
    "resolved.toml": "every value, defaults filled in: what the engine trains (rewritten atomically on resume)",
    "run.json": "what the run is, as data: name, source config, tags, overrides (typed), sweep and its values, "
                "parent run and step, dependencies, GPUs asked for; written once, at creation",
    "state.json": "status, reason, engine pid and start time, owner, slot, step and a timestamped history; "
                  "changed only by the lifecycle's moves, compare-and-set under the run's lock",
    "events.jsonl": "the engine's event log, one JSON object a line (the event kinds below)",
    "engine.log": "the engine's stdout and stderr",
    "checkpoints/": "step_N.pt (model, optimizer, grad scaler, RNG states, data position) and `latest`, "
                    "naming the newest complete one; the newest three step files are kept",
    "wandb/": "the wandb run (offline unless log.wandb_mode = \"online\"; upload with wandb sync)",
    ".lock": "the run's lock: every change of state.json happens while it is held",
}


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- layout -------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.path.name

    config = property(lambda self: self.path / "config.toml")
    resolved = property(lambda self: self.path / "resolved.toml")
    state_file = property(lambda self: self.path / "state.json")
    meta_file = property(lambda self: self.path / "run.json")
    events = property(lambda self: self.path / "events.jsonl")
    log = property(lambda self: self.path / "engine.log")

    def node_log(self, node: int) -> Path:
        """A run's log on node ``node`` of a multi-node run (node 0's is engine.log)."""
        return self.log if node == 0 else self.path / f"engine.node{node}.log"
    checkpoints = property(lambda self: self.path / "checkpoints")
    wandb = property(lambda self: self.path / "wandb")

    def read_config(self) -> RunConfig:
        """The run's resolved.toml, checked like any config."""
        try:
            data = tomllib.loads(self.resolved.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(str(self.resolved), "file", "missing; the run directory is incomplete") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(str(self.resolved), "TOML syntax", str(e)) from None
        return config_from_dict(data, str(self.resolved))

    def checkpoint_steps(self) -> list[int]:
        return checkpoint_steps(self.checkpoints)

    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.checkpoints)

    # -- metadata -----------------------------------------------------------------------
    def read_meta(self) -> RunMeta:
        """run.json; a run made before run.json existed (or a damaged one) reads as defaults."""
        try:
            data = json.loads(self.meta_file.read_text(encoding="utf-8"))
            return RunMeta.from_dict(data) if isinstance(data, dict) else RunMeta()
        except (OSError, ValueError, TypeError):
            return RunMeta()

    def write_meta(self, meta: RunMeta) -> None:
        atomic_write(self.meta_file, json.dumps(asdict(meta), indent=1))

    # -- state --------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The run's lock: every change of state.json happens inside it."""
        try:
            lock = acquire(self.path / ".lock")
        except (FileNotFoundError, NotADirectoryError):
            raise RunGone(f"{self.id}: the run directory {self.path} is gone") from None
        try:
            if not self.path.is_dir():  # removed while we waited for the lock
                raise RunGone(f"{self.id}: the run directory {self.path} is gone")
            yield
        finally:
            lock.release()

    def read_state(self) -> RunState:
        """The current state. Raises StateDamaged (one line) when state.json is missing or not
        a state, RunGone when the directory itself is gone."""
        try:
            text = self.state_file.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            if not self.path.is_dir():
                raise RunGone(f"{self.id}: the run directory {self.path} is gone") from None
            raise StateDamaged(f"{self.id}: {self.state_file} is missing; the run directory is incomplete") from None
        except (OSError, UnicodeDecodeError) as e:
            raise StateDamaged(f"{self.id}: {self.state_file} cannot be read ({e})") from None
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return RunState.from_dict(data)
        except (ValueError, TypeError) as e:
            raise StateDamaged(f"{self.id}: {self.state_file} is damaged ({str(e).splitlines()[0][:80]}); "
                               f"restore it or remove the run") from None

    def _write_state(self, state: RunState) -> None:
        atomic_write(self.state_file, json.dumps(asdict(state), indent=1))

    def _check(self, state: RunState | None, expected: Expected, guard: Callable[[RunState], str] | None) -> None:
        found = state.status if state is not None else None
        ok = found == expected if expected is None or isinstance(expected, str) else found in expected
        if not ok:
            raise StateConflict(f"{self.id} is {found or 'not created yet'}, not {_expected_text(expected)}: "
                                f"it changed meanwhile; look again with cockpit status")
        if guard is not None and state is not None and (problem := guard(state)):
            raise StateConflict(f"{self.id}: {problem}")

    def create_state(self, status: str = QUEUED, **updates: Any) -> RunState:
        """The first state of a new run directory (fails if one exists): the lifecycle's
        ``create`` move (queued). Tests and benchmarks may lay out a run in another state."""
        with self.locked():
            if self.state_file.exists():
                self._check(self.read_state(), None, None)
            state = RunState(status=status, **updates)
            state.history.append({"status": status, "time": round(time.time(), 3), "step": 0})
            self._write_state(state)
            return state

    def transition(self, verb: str, *, expected: Expected = None, reason: str = "",
                   guard: Callable[[RunState], str] | None = None, **updates: Any) -> RunState:
        """Compare-and-set: make the lifecycle move ``verb`` if the run is in one of its states
        (narrowed to ``expected`` when given) and ``guard`` returns no objection, stamping the
        time and the reason; else raise StateConflict."""
        sources = lifecycle.allowed(verb, (expected,) if isinstance(expected, str) else expected)
        with self.locked():
            state = self.read_state()
            self._check(state, sources, guard)
            state.move(verb, reason, **updates)
            self._write_state(state)
            return state

    def modify(self, change: Callable[[RunState], None]) -> RunState:
        """Read-modify-write under the lock for changes whose rule is more than one expected
        state (the engine attaching, recovery): ``change`` mutates the state (``move`` for a
        transition) or raises StateConflict to refuse."""
        with self.locked():
            state = self.read_state()
            change(state)
            self._write_state(state)
            return state

    def update(self, *, expected: Expected | object = ANY_STATE, guard: Callable[[RunState], str] | None = None,
               **updates: Any) -> RunState:
        """Change bookkeeping fields (step, pid...) without a transition, under the lock;
        ``expected`` (default: any state) and ``guard`` as for ``transition``."""
        with self.locked():
            state = self.read_state()
            if expected is not ANY_STATE:
                self._check(state, expected, guard)  # type: ignore[arg-type]
            elif guard is not None:
                self._check(state, state.status, guard)
            for key, value in updates.items():
                setattr(state, key, value)
            self._write_state(state)
            return state


def one_line(text: str) -> str:
    """The last non-empty line of a reason (tracebacks end with the exception)."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


STEP_FILE = re.compile(r"step_(\d+)\.pt$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}.pt"


def checkpoint_steps(directory: Path) -> list[int]:
    """Steps that have a checkpoint file, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for f in directory.iterdir() if (m := STEP_FILE.match(f.name)))


def latest_checkpoint(directory: Path) -> Path | None:
    """The file ``checkpoints/latest`` names (replaced only after the file is complete), or
    the newest step file when the pointer is missing."""
    try:
        p = directory / (directory / "latest").read_text().strip()
        if p.is_file():
            return p
    except OSError:
        pass
    steps = checkpoint_steps(directory)
    return directory / checkpoint_name(steps[-1]) if steps else None


def new_run_id(runs_dir: Path, name: str) -> str:
    """'<name>-<YYYYmmdd-HHMMSS>', with a counter when two runs start in the same second. The
    name part is cut so an id stays a valid directory name (NAME_MAX is 255 bytes)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[: MAX_ID_LEN - 20].strip("-.") or "run"
    base = f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_id, n = base, 1
    while (runs_dir / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id
