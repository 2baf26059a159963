"""Creating, finding and launching runs. Torch-free: configs are checked with the engine's
torch-free schema, and training happens in a ``python -m engine train`` subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import tomli_w

from engine import events
from engine.config import BUILTIN_STORIES, ConfigError, RunConfig, config_from_dict, load_config, resolved_dict
from engine.rundir import FAILED, QUEUED, RUNNING, RunDir, RunState, new_run_id


class RunError(ValueError):
    """A one-line problem with a run (not found, already running, nothing to resume)."""


def runs_root(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("COCKPIT_RUNS_DIR") or "runs")


def _absolute_data_path(cfg: RunConfig) -> None:
    # resolved.toml must not depend on the directory the run is later resumed from
    if cfg.data.path != BUILTIN_STORIES:
        cfg.data.path = str(Path(cfg.data.path).expanduser().resolve())


def write_resolved(rd: RunDir, cfg: RunConfig) -> None:
    rd.resolved.write_text(tomli_w.dumps(resolved_dict(cfg)), encoding="utf-8")


def create_run(config_path: str | Path, overrides: list[str] | None = None, name: str | None = None,
               runs_dir: Path | None = None) -> RunDir:
    """Check the config, then create ``runs/<id>/`` (config.toml, resolved.toml, state queued).
    A bad config creates nothing."""
    cfg = load_config(config_path, overrides)
    _absolute_data_path(cfg)
    root = runs_dir or runs_root()
    root.mkdir(parents=True, exist_ok=True)
    rd = claim_run_dir(root, name or Path(config_path).stem)
    try:
        shutil.copyfile(config_path, rd.config)
        if overrides:
            with open(rd.config, "a", encoding="utf-8") as f:
                f.write("\n# overrides given on the command line (--set):\n")
                f.writelines(f"#   {o}\n" for o in overrides)
        write_resolved(rd, cfg)
        rd.transition(QUEUED)  # state.json last: readers only count a directory with one
    except BaseException:
        shutil.rmtree(rd.path, ignore_errors=True)
        raise
    return rd


def claim_run_dir(root: Path, name: str) -> RunDir:
    """A new, empty run directory. mkdir is atomic, so two processes creating runs of the
    same name in the same second get different ids instead of one overwriting the other."""
    while True:
        run_id = new_run_id(root, name)
        try:
            (root / run_id).mkdir()
            return RunDir(root / run_id)
        except FileExistsError:
            continue


def find_run(ref: str, runs_dir: Path | None = None) -> RunDir:
    """A run by path, exact id, or unique id prefix."""
    root = runs_dir or runs_root()
    p = Path(ref)
    if (p / "state.json").exists():
        return RunDir(p)
    if (root / ref / "state.json").exists():
        return RunDir(root / ref)
    is_prefix = root.is_dir() and "/" not in ref and ref not in ("", ".", "..")
    matches = sorted(d for d in root.glob(f"{ref}*") if (d / "state.json").exists()) if is_prefix else []
    if len(matches) == 1:
        return RunDir(matches[0])
    if len(matches) > 1:
        raise RunError(f"'{ref}' matches several runs ({', '.join(m.name for m in matches[:5])}); give more of the id")
    raise RunError(f"no run '{ref}' under {root}/; list them with: ls {root}")


def list_runs(runs_dir: Path) -> list[RunDir]:
    """Every run directory (one with a state.json), in id order."""
    if not runs_dir.is_dir():
        return []
    return [RunDir(d) for d in sorted(runs_dir.iterdir()) if not d.name.startswith(".") and (d / "state.json").exists()]


def record_engine_exit(rd: RunDir, code: int | None) -> RunState:
    """After an engine is gone: if it died without recording its end (killed, crashed hard),
    mark the run failed with the exit code and the last line of engine.log."""
    state = rd.read_state()
    if state.status == RUNNING:
        last = events.tail_bytes(rd.log).strip().splitlines()
        reason = f"engine exited with code {code}" + (f": {last[-1]}" if last else "")
        return rd.transition(FAILED, reason=reason, exit_code=code, pid=None)
    if code is not None and state.exit_code is None:
        return rd.update(exit_code=code)
    return state


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def prepare_resume(rd: RunDir, max_steps: int | None, max_time: str | None) -> RunConfig:
    """Apply --max-steps/--max-time to resolved.toml after checking the run can continue."""
    state = rd.read_state()
    if state.status == RUNNING and pid_alive(state.pid):
        raise RunError(f"{rd.id} is running (pid {state.pid}); stop it first")
    cfg = rd.read_config()
    data = resolved_dict(cfg)
    if max_steps is not None:
        data["train"]["max_steps"] = max_steps
    if max_time is not None:
        data["train"]["max_time"] = max_time
    try:
        cfg = config_from_dict(data, "--max-steps/--max-time")
    except ConfigError as e:
        raise RunError(str(e)) from None
    steps = rd.checkpoint_steps()
    done = steps[-1] if steps else 0
    if done >= cfg.train.max_steps:
        raise RunError(f"{rd.id} has already trained {done}/{cfg.train.max_steps} steps; "
                       f"pass --max-steps N with N > {done} to train further")
    write_resolved(rd, cfg)
    return cfg


def start_engine(rd: RunDir, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``python -m engine train`` for a run, output to engine.log.

    It gets its own session, so a Ctrl-C or a closing terminal reaches only the cockpit,
    which then asks the engine to stop cleanly (SIGINT -> checkpoint -> stopped)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    with open(rd.log, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "engine", "train", str(rd.path)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
