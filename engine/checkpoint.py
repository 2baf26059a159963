"""Checkpoints: model + optimizer + scaler + RNG states + data position, written atomically.

Files are ``checkpoints/step_0000100.pt`` (seven digits); ``checkpoints/latest`` names the
newest one and is replaced atomically after the file is complete, so a crash mid-write leaves
the previous checkpoint in force. Only the newest ``keep`` step files are kept.

Loading for a resume verifies the file (it must unpickle as a cockpit checkpoint) and falls
back to the newest intact one, renaming a damaged file to ``step_N.pt.damaged`` so it is kept
for inspection but never chosen again. Temporary files that a killed writer left behind are
removed before the next write.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from runspec.fs import atomic_file, atomic_write
from runspec.run.rundir import checkpoint_name, checkpoint_steps, latest_checkpoint


class CheckpointError(ValueError):
    pass


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (a full disk): the run failed, its input was fine."""


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Half-written checkpoint files (``.step_N.pt.*.tmp``) whose writer is gone. One engine
    writes a run's checkpoints, so at its start or before its own next write every such file
    is stale."""
    removed = []
    if directory.is_dir():
        for f in directory.glob(".step_*.tmp"):
            try:
                f.unlink()
                removed.append(f)
            except OSError:
                pass
    return removed


def save(directory: Path, step: int, payload: dict[str, Any], keep: int = 3) -> Path:
    """Write ``payload`` as the checkpoint of ``step``. On failure (disk full...) nothing is
    left behind and the previous checkpoint stays in force; the error is one line."""
    directory.mkdir(exist_ok=True)  # not its parents: a run directory that is gone stays gone
    remove_stale_temporaries(directory)
    path = directory / checkpoint_name(step)
    try:
        with atomic_file(path) as f:  # a Python file: a failed write keeps its OSError (errno) in the chain
            torch.save(payload, f)
        atomic_write(directory / "latest", path.name + "\n")
    except (OSError, RuntimeError) as e:  # torch reports ENOSPC as RuntimeError from its zip writer
        last = latest_checkpoint(directory)
        kept = f"the checkpoint at {last.name} is kept" if last is not None else "no earlier checkpoint exists"
        raise CheckpointWriteError(f"{path}: could not be written ({_os_reason(e)}); {kept}. "
                                   f"Free disk space, then resume the run") from None
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
    if not zipfile.is_zipfile(path):  # torch.save writes a zip; a truncated one has no directory at its end
        size = path.stat().st_size if path.exists() else 0
        raise CheckpointError(f"{path}: cannot be loaded (not a complete torch file, {size:,} bytes): "
                              f"the file is damaged or not a cockpit checkpoint")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot be loaded ({type(e).__name__}: {_first_line(e)[:100]}): "
                              f"the file is damaged or not a cockpit checkpoint") from None
    if not isinstance(payload, dict) or "model" not in payload or "step" not in payload:
        raise CheckpointError(f"{path}: not a cockpit checkpoint (no model/step)")
    return upgraded(payload)


def upgraded(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint with the parameter names of older versions brought up to date, in its model
    state and in FSDP's optimizer state (keyed by name); a plain optimizer state is by position,
    which the heads' fixed order keeps."""
    from engine.model.gpt import current_name, upgrade_state

    payload["model"] = upgrade_state(payload["model"])
    fsdp = payload.get("optim", {}).get("fsdp") if isinstance(payload.get("optim"), dict) else None
    if isinstance(fsdp, dict) and isinstance(fsdp.get("state"), dict):
        fsdp["state"] = upgrade_state(fsdp["state"])
        for group in fsdp.get("param_groups", []):
            group["params"] = [current_name(n) if isinstance(n, str) else n for n in group.get("params", [])]
    return payload


@dataclass
class Loaded:
    path: Path
    payload: dict[str, Any]
    skipped: list[str]  # one line per damaged newer checkpoint that was set aside


def load_newest(directory: Path, map_location: str | torch.device = "cpu") -> Loaded | None:
    """The newest intact checkpoint (by step, whatever ``latest`` says: a file newer than the
    pointer is complete, the pointer is written after it). Damaged ones are renamed to
    ``.damaged`` and reported; None when there is no checkpoint at all. Raises when every
    checkpoint is damaged."""
    steps = checkpoint_steps(directory)
    skipped: list[str] = []
    for step in reversed(steps):
        path = directory / checkpoint_name(step)
        try:
            payload = load(path, map_location)
        except CheckpointError as e:
            skipped.append(str(e))
            try:
                path.rename(path.with_name(path.name + ".damaged"))
            except OSError:
                pass
            continue
        if skipped:  # the pointer must not name a file that was set aside
            atomic_write(directory / "latest", path.name + "\n")
        return Loaded(path, payload, skipped)
    if skipped:
        raise CheckpointError(f"{directory}: every checkpoint is damaged ({len(skipped)}: {skipped[0]}); "
                              f"the damaged files are kept as step_N.pt.damaged")
    return None


def _os_reason(e: BaseException) -> str:
    """The operating system's words for a failed write (torch wraps them in its own error)."""
    seen = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return _first_line(e)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
