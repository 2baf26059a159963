"""``cockpit export RUN --merged OUT.pt``: a plain checkpoint with LoRA adapters merged. The
engine writes it (torch); the command resolves the run and passes the exit code on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cockpit.args import non_negative_int


def register(sub) -> None:
    x = sub.add_parser("export", help="write a plain checkpoint of a run with its LoRA adapters merged "
                                      "(for cockpit complete and [init] from)")
    x.add_argument("run", help="run id, unique id prefix, or run directory")
    x.add_argument("--step", type=non_negative_int, default=None, help="checkpoint step (default: the latest)")
    x.add_argument("--merged", required=True, metavar="OUT", help="the .pt file to write (must not exist)")
    x.set_defaults(func=export)


def export(args) -> int:
    from cockpit.args import fail
    from cockpit.runs import find_run, runs_root
    from runspec.run.rundir import FAILED, StateError

    rd = find_run(args.run, runs_root(args.runs_dir))
    if not rd.checkpoint_steps():  # said here, in the run's own terms, before the engine loads torch
        try:
            state = rd.read_state()
        except StateError:
            state = None
        if state is not None and state.status == FAILED:
            return fail(f"{rd.id} failed before writing a checkpoint ({state.reason}); there is nothing to export: "
                        f"fix the cause and 'cockpit queue retry {rd.id}'")
        status = state.status if state is not None else "unreadable"
        return fail(f"{rd.id} has no checkpoint yet ({status}); export it after it has trained")
    cmd = [sys.executable, "-m", "engine", "export", str(rd.path), "--merged", str(Path(args.merged).resolve())]
    if args.step is not None:
        cmd += ["--step", str(args.step)]
    return subprocess.run(cmd).returncode
