"""A run directory and its state.json: the one place both halves agree on a run's files.

state.json is always replaced atomically (write a temp file, fsync, rename), so a reader
never sees half a file. Every transition is appended to ``history`` with a timestamp and,
for failures, a one-line reason. Torch-free.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.config import ConfigError, RunConfig, config_from_dict, tomllib

QUEUED, RUNNING, COMPLETED, FAILED, STOPPED, INTERRUPTED = (
    "queued", "running", "completed", "failed", "stopped", "interrupted",
)
STATES = (QUEUED, RUNNING, COMPLETED, FAILED, STOPPED, INTERRUPTED)
FINISHED = (COMPLETED, FAILED, STOPPED, INTERRUPTED)


def atomic_write(path: str | Path, data: str | bytes) -> None:
    path = Path(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@dataclass
class RunState:
    status: str = QUEUED
    reason: str = ""
    pid: int | None = None
    step: int = 0
    max_steps: int = 0
    exit_code: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunState":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


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
    events = property(lambda self: self.path / "events.jsonl")
    log = property(lambda self: self.path / "engine.log")
    checkpoints = property(lambda self: self.path / "checkpoints")
    wandb = property(lambda self: self.path / "wandb")

    def read_config(self) -> RunConfig:
        """The run's resolved.toml, checked like any config."""
        try:
            data = tomllib.loads(self.resolved.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(str(self.resolved), "file", "missing; the run directory is incomplete") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(str(self.resolved), "TOML syntax", str(e)) from None
        return config_from_dict(data, str(self.resolved))

    def checkpoint_steps(self) -> list[int]:
        return checkpoint_steps(self.checkpoints)

    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.checkpoints)

    # -- state --------------------------------------------------------------------------
    def read_state(self) -> RunState:
        try:
            return RunState.from_dict(json.loads(self.state_file.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return RunState()

    def write_state(self, state: RunState) -> None:
        atomic_write(self.state_file, json.dumps(asdict(state), indent=1))

    def update(self, **updates: Any) -> RunState:
        """Change bookkeeping fields (step, pid...) without a state transition."""
        state = self.read_state()
        for key, value in updates.items():
            setattr(state, key, value)
        self.write_state(state)
        return state

    def transition(self, status: str, reason: str = "", **updates: Any) -> RunState:
        """Move to ``status``, stamping the time (and the reason, for failures)."""
        assert status in STATES, status
        state = self.read_state()
        state.status = status
        state.reason = reason.strip().splitlines()[-1] if reason.strip() else ""
        for key, value in updates.items():
            setattr(state, key, value)
        entry: dict[str, Any] = {"status": status, "time": round(time.time(), 3)}
        if state.reason:
            entry["reason"] = state.reason
        state.history.append(entry)
        self.write_state(state)
        return state


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
    """'<name>-<YYYYmmdd-HHMMSS>', with a counter when two runs start in the same second."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "run"
    base = f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_id, n = base, 1
    while (runs_dir / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id
