"""The launcher of a run on several devices: ``python -m engine train RUN_DIR`` with
``[train] gpus = N > 1`` starts ``torchrun --standalone --nproc-per-node N`` with the same
command and stays beside it; with ``nodes = M > 1`` each machine's launcher starts its own
torchrun, and the M of them meet at node 0's rendezvous. Torch-free (the ranks import torch, the launcher need not).

The launcher is the process the run's state names as its engine, so ``cockpit queue stop``, status
and the worker's bookkeeping treat a distributed run like any other. torchrun puts each rank
in a session of its own and, when signalled, gives ranks 30 s before SIGKILL; a checkpoint
of a large model may need longer, so a stop goes from the launcher to the ranks directly
(SIGTERM to each: they agree on a step, rank 0 checkpoints, all leave) and only a second
stop goes to torchrun. When a rank dies, torchrun ends the others and prints which rank
failed and how; the launcher turns that into the run's reason when rank 0 could not record
one itself. Across machines, node 0 sees only the consequence of another node's failure (a
connection its collective lost), so it reads the cause from that node's log, where each
node's launcher writes one "ranks ended" line (runspec.run.node_end).
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from runspec.run.process import Proc, children

LAUNCHER_ENV = "COCKPIT_LAUNCHER"  # "pid:start" of the launcher; ranks name it as the run's engine


@dataclass(frozen=True)
class Nodes:
    """A run across machines: ``count`` nodes meeting at node 0's ``endpoint`` (HOST:PORT).

    torchrun's static rendezvous, not c10d: c10d gives out node ranks by sorting the nodes' host
    names, so global rank 0 (which owns the run's state, events and checkpoints) could land on a
    machine other than the one whose engine the run's state names; static keeps --node-rank as
    given. A run is a fixed shape, so c10d's elasticity would buy nothing here."""

    count: int
    rank: int
    endpoint: str


def rank_env() -> tuple[int, int] | None:
    """(rank, world size) when this process is a rank torchrun started, else None."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return None


def identity() -> Proc:
    """The process a rank names as the run's engine: cockpit's launcher when there is one,
    else the torchrun agent that started this rank (``torchrun ... -m engine train`` by hand,
    across machines: stopping the agent on the first node stops every rank, see train.py)."""
    value = os.environ.get(LAUNCHER_ENV, "")
    pid, _, start = value.partition(":")
    if pid.isdigit():
        return Proc(int(pid), start, "engine")
    return Proc.of(os.getppid(), "engine") or Proc.me("engine")


def torchrun_command(run_dir: Path, nproc: int, nodes: Nodes | None = None) -> list[str]:
    where = ["--standalone"] if nodes is None else [
        f"--nnodes={nodes.count}", f"--node-rank={nodes.rank}", "--rdzv-backend=static",
        f"--rdzv-endpoint={nodes.endpoint}", f"--rdzv-id={run_dir.name}", "--max-restarts=0"]
    return [sys.executable, "-m", "torch.distributed.run", *where, f"--nproc-per-node={nproc}",
            "-m", "engine", "train", str(run_dir)]


def failure_reason(lines: list[str], code: int) -> str:
    """Which rank failed and how, from torchrun's "Root Cause" summary ('' when absent)."""
    text = "\n".join(lines)
    at = text.rfind("Root Cause")
    if at < 0:
        return ""
    cause = text[at:]
    rank = re.search(r"rank\s*:\s*(\d+)", cause)
    exitcode = re.search(r"exitcode\s*:\s*(-?\d+)", cause)
    trace = re.search(r"traceback\s*:\s*(.+)", cause)
    if rank is None:
        return ""
    how = ""
    if exitcode is not None:
        n = int(exitcode.group(1))
        if n < 0:
            try:
                how = f"was killed by {signal.Signals(-n).name}"
            except ValueError:
                how = f"was killed by signal {-n}"
        else:
            how = f"exited with code {n}"
    detail = trace.group(1).strip() if trace else ""
    if detail.startswith("Signal ") or detail.startswith("To enable traceback"):
        detail = ""
    return f"rank {rank.group(1)} {how or 'failed'}" + (f": {detail}" if detail else "") + \
        "; torchrun ended the other ranks (see engine.log)"


def launch(run_dir: Path, nproc: int, me: Proc, stop, log, nodes: Nodes | None = None) -> tuple[int, str]:
    """Run this machine's ranks under torchrun until they finish. Returns torchrun's exit code
    and, when it failed, the reason its summary gives."""
    env = {**os.environ, LAUNCHER_ENV: f"{me.pid}:{me.start}", "PYTHONUNBUFFERED": "1"}
    command = torchrun_command(run_dir, nproc, nodes)
    log(f"launching {nproc} ranks{f' on node {nodes.rank} of {nodes.count}' if nodes else ''}: {' '.join(command[1:])}")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    tail: collections.deque[str] = collections.deque(maxlen=400)

    def copy() -> None:  # torchrun's output (the ranks' too) into ours: engine.log
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            tail.append(line.rstrip("\n"))
            sys.stdout.write(line)
            sys.stdout.flush()

    reader = threading.Thread(target=copy, daemon=True)
    reader.start()
    forwarded = 0
    while proc.poll() is None:
        if stop.count > forwarded:
            if forwarded == 0:
                ranks = children(proc.pid)
                if ranks:  # (none yet: torchrun is still starting them; try again shortly)
                    for pid in ranks:
                        try:
                            os.kill(pid, signal.SIGTERM)
                        except ProcessLookupError:
                            pass
                    log(f"{stop.signal}: asked {len(ranks)} ranks to stop at the next step (a second stop ends "
                        f"them through torchrun)")
                    forwarded = stop.count
            else:
                proc.send_signal(signal.SIGTERM)  # torchrun: SIGTERM to every rank, SIGKILL after 30 s
                log(f"{stop.signal} again: torchrun ends the ranks now")
                forwarded = stop.count
        time.sleep(0.1)
    reader.join(timeout=10)
    code = proc.returncode
    return code, failure_reason(list(tail), code) if code else ""
