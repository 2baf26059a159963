"""The engine -> cockpit event protocol: ``events.jsonl``, one JSON object a line.

Every event has ``kind`` and ``time`` (unix seconds) and, where it applies, ``step``. The
metric names inside ``step``/``eval``/``final`` events are the same names wandb gets
(``train/loss``, ``train_benchmarks/loss``, ``debug/grad_norm/blocks`` ...), so the TUI
and wandb never disagree. Readers ignore kinds and fields they do not know, and skip a
truncated last line (the writer died mid-write). Torch-free: both halves import it.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START = "start"  # config summary, parameter counts, device
STEP = "step"  # train/* and debug/* metrics at a log interval
EVAL = "eval"  # train_benchmarks/* (running validation)
FINAL = "final"  # final_benchmarks/* (one pass over the validation split)
SAMPLE = "sample"  # generated text
CHECKPOINT = "checkpoint"  # path, step
STATUS = "status"  # state changes seen from the engine: running, stopped, completed
ERROR = "error"  # a failure with a one-line reason
WARNING = "warning"  # something the user should know that did not stop the run (message)
STAGE = "stage"  # a stage began (stage, stages, name, description, params, params_trainable) or ReLoRA restarted
PROGRESS = "progress"  # a long pass after training: what (final), done and total windows, tokens it scores

def stage_probe(data: dict) -> str:
    """'; loss on a fixed batch 2.3456 -> 2.3457' for a stage event that measured it, as the
    engine log and the headless line both say it."""
    a, b = data.get("loss_before"), data.get("loss_after")
    return f"; loss on a fixed batch {a:.4f} -> {b:.4f}" if a is not None and b is not None else ""


KINDS = (START, STEP, EVAL, FINAL, SAMPLE, CHECKPOINT, STATUS, ERROR, WARNING, STAGE, PROGRESS)


@dataclass
class Event:
    kind: str
    time: float
    step: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @property
    def metrics(self) -> dict[str, float]:
        m = self.data.get("metrics")
        return m if isinstance(m, dict) else {}


def _clean(value: Any) -> Any:
    # JSON has no NaN/Inf; a diverged loss must still be a readable line.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def encode(kind: str, step: int | None = None, **data: Any) -> str:
    obj: dict[str, Any] = {"kind": kind, "time": round(time.time(), 3)}
    if step is not None:
        obj["step"] = int(step)
    obj.update(_clean(data))
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def decode(line: str) -> Event | None:
    """One line -> Event, or None for a blank, truncated or foreign line."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str):
        return None
    kind = obj.pop("kind")
    t = obj.pop("time", 0.0)
    step = obj.pop("step", None)
    return Event(kind=kind, time=float(t) if isinstance(t, (int, float)) else 0.0,
                 step=step if isinstance(step, int) else None, data=obj)


class EventWriter:
    """Appends events; each line is written with one write() and flushed, so a reader sees
    whole lines except, at worst, a truncated last one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = open(self.path, "a", encoding="utf-8")

    def emit(self, kind: str, step: int | None = None, **data: Any) -> None:
        self._f.write(encode(kind, step, **data) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class NullWriter(EventWriter):
    """What ranks other than 0 of a distributed run write: nothing (rank 0 speaks for all)."""

    def __init__(self) -> None:
        self.path = None

    def emit(self, kind: str, step: int | None = None, **data: Any) -> None:
        pass

    def close(self) -> None:
        pass


class EventReader:
    """Incremental reader: each ``read_new()`` returns the whole lines appended since the
    last call. A partial trailing line is kept back until its newline arrives."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self._partial = b""
        self.caught_up = False

    def read_new(self, max_bytes: int = -1) -> list[Event]:
        """``max_bytes`` bounds one call's reading (a long history is then read in pieces,
        in bounded memory); ``caught_up`` says whether the end of the file was reached."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read(max_bytes)
        except FileNotFoundError:
            self.caught_up = True
            return []
        self.caught_up = max_bytes < 0 or len(chunk) < max_bytes
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # b"" when the chunk ended with a newline
        out = []
        for raw in lines:
            ev = decode(raw.decode("utf-8", errors="replace"))
            if ev is not None:
                out.append(ev)
        return out


def read_events(path: str | Path) -> list[Event]:
    """All complete events in a file; a truncated last line is skipped."""
    return EventReader(path).read_new()


def tail_bytes(path: str | Path, n: int = 4096) -> str:
    """The last n bytes of a text file (for failure reasons from engine.log)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            f.seek(max(0, size - n))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
