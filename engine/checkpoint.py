"""Checkpoints: model + optimizer + scaler + RNG states + data position, written atomically.

Files are ``checkpoints/step_000100.pt``; ``checkpoints/latest`` names the newest one and is
replaced atomically after the file is complete, so a crash mid-write leaves the previous
checkpoint in force. Only the newest ``keep`` step files are kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from engine.rundir import atomic_write, checkpoint_name, checkpoint_steps, latest_checkpoint


class CheckpointError(ValueError):
    pass


def save(directory: Path, step: int, payload: dict[str, Any], keep: int = 3) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / checkpoint_name(step)
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    try:
        torch.save(payload, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    atomic_write(directory / "latest", path.name + "\n")
    for old in checkpoint_steps(directory)[:-keep] if keep > 0 else []:
        (directory / checkpoint_name(old)).unlink(missing_ok=True)
    return path


def find(directory: Path, step: int | None = None) -> Path:
    """The checkpoint at ``step``, or the latest one; a clear error when there is none."""
    if step is None:
        p = latest_checkpoint(directory)
        if p is None:
            raise CheckpointError(f"{directory}: no checkpoint yet; train the run first")
        return p
    p = directory / checkpoint_name(step)
    if not p.exists():
        have = ", ".join(str(s) for s in checkpoint_steps(directory)) or "none"
        raise CheckpointError(f"{directory}: no checkpoint at step {step} (available: {have})")
    return p


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                              f"the file is corrupt or not a cockpit checkpoint") from None
    if not isinstance(payload, dict) or "model" not in payload or "step" not in payload:
        raise CheckpointError(f"{path}: not a cockpit checkpoint (no model/step)")
    return payload
