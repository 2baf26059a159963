"""The exit statuses of cockpit's commands: one table, shown in the CLI reference (generated
from it) and tested. A run that did not complete is never success: a script's ``run && next``
stops after a Ctrl-C, a kill or a failure, and can tell them apart."""

from __future__ import annotations

from runspec.run.lifecycle import COMPLETED, FAILED, INTERRUPTED, STOPPED
from runspec.run.rundir import RunState

OK = 0
RUN_FAILED = 1
BAD_INPUT = 2
RUN_STOPPED = 3
RUN_KILLED = 4

TABLE: list[tuple[int, str]] = [
    (OK, "done: the run completed (or the command did what it was asked)"),
    (RUN_FAILED, "the run failed: the loss diverged, the engine crashed, a rank died, a checkpoint could not be "
                 "written (a full disk)"),
    (BAD_INPUT, "bad input, refused: a config, an argument, a run name, data that cannot be read; nothing that "
                "existed was changed"),
    (RUN_STOPPED, "the run stopped before it completed: Ctrl-C, SIGTERM, a stop request or its time budget; it has "
                  "a checkpoint, and `cockpit --headless resume RUN` continues it"),
    (RUN_KILLED, "the engine was killed (SIGKILL, out of memory, a second Ctrl-C): `resume` continues from the last "
                 "checkpoint"),
]


def for_run(state: RunState) -> int:
    """The exit status of a command that trained a run, from the state it ended in."""
    if state.status == COMPLETED:
        return OK
    if state.status == FAILED:
        return BAD_INPUT if state.exit_code == BAD_INPUT else RUN_FAILED
    if state.status == INTERRUPTED:
        return RUN_KILLED
    if state.status == STOPPED:
        return RUN_STOPPED
    return RUN_FAILED  # still "running" after the engine left: it did not record its end


def markdown() -> str:
    rows = "\n".join(f"| {code} | {text} |" for code, text in TABLE)
    return f"| exit status | meaning |\n|---|---|\n{rows}\n"
