"""A run across machines, seen from the CLI: node 0 creates and owns the run (``cockpit --headless
run x.toml --nodes N --rdzv HOST:PORT``); every other node joins it with the same command and
``--node-rank K``. The runs directory must be one the nodes share (NFS, Lustre, a cluster's
scratch): the other nodes' ranks read the run's config there and, on a resume, the checkpoint
rank 0 picked; node K writes only ``engine.node<K>.log`` beside the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cockpit import exit_codes
from cockpit.runs import RunError, list_runs, run_config
from runspec.config.schema import RunConfig, node_problem
from runspec.run import node_end
from runspec.run.rundir import FAILED, QUEUED, RUNNING, RunDir, StateError

JOIN_WAIT_S = 600.0  # how long node K waits for node 0 to create the run (nodes start in any order)


def overrides(nodes: int | None, rdzv: str | None) -> list[str]:
    """--nodes/--rdzv as --set overrides of [train]."""
    out = [f"train.nodes={nodes}"] if nodes is not None else []
    return out + ([f"train.rdzv={_quoted(rdzv)}"] if rdzv else [])


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_leader(cfg: RunConfig, seeds: bool = False) -> None:
    """Node 0 of a multi-node run needs the address the others will meet it at."""
    if cfg.train.nodes > 1 and seeds:
        raise RunError("--seeds with --nodes: the nodes meet for one run; start each seed's run across the nodes "
                       "by itself (--set train.seed=S)")
    why = node_problem(cfg.train.nodes, 0, cfg.train.rdzv)
    if why:
        raise RunError(why)


def find_joinable(runs_dir: Path, cfg: RunConfig, name: str | None, wait_s: float = JOIN_WAIT_S) -> RunDir:
    """The run node 0 created for this rendezvous: the newest queued or running run whose
    [train] nodes and rdzv are these (and whose name starts with --name, if given). Waits for
    node 0 to create it; a RunError when it never appears."""
    want = (cfg.train.nodes, cfg.train.rdzv)
    deadline = time.monotonic() + wait_s
    while True:
        for rd in reversed(list_runs(runs_dir)):
            other = run_config(rd)
            if other is None or (other.train.nodes, other.train.rdzv) != want:
                continue
            if name and not rd.id.startswith(name + "-"):
                continue
            try:
                status = rd.read_state().status
            except StateError:
                continue
            if status in (QUEUED, RUNNING):
                return rd
        if time.monotonic() >= deadline:
            raise RunError(f"no running run in {runs_dir} has [train] nodes = {want[0]} and rdzv = {want[1]!r} after "
                           f"{wait_s:.0f} s: start node 0 first (--node-rank 0), and give every node the same runs "
                           f"directory (--runs-dir on a filesystem they share)")
        time.sleep(0.5)


def join(rd: RunDir, node: int, rdzv: str | None = None) -> int:
    """Run node ``node``'s ranks of ``rd`` here until they end: ``python -m engine train RUN
    --node-rank K``, output to engine.node<K>.log. A Ctrl-C asks this node's ranks to stop, and
    the ranks agree on a step with every other node: the whole run stops. The exit status is
    the run's, as node 0 recorded it (cockpit.exit_codes)."""
    log = rd.node_log(node)
    command = [sys.executable, "-m", "engine", "train", str(rd.path), "--node-rank", str(node)]
    if rdzv:
        command += ["--rdzv", rdzv]
    print(f"joining {rd.id} as node {node}; this node's log: {log}", flush=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    asked = 0

    def on_sigint(signum, frame):
        nonlocal asked
        asked += 1
        if asked == 1:
            print("stopping: every node stops at the same step, node 0 writes the checkpoint (Ctrl-C again to kill "
                  "this node's ranks)", flush=True)
            proc.send_signal(signal.SIGTERM)
        else:
            proc.kill()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return _outcome(rd, node, code)


def _outcome(rd: RunDir, node: int, code: int) -> int:
    """Node 0 records the run's end; wait a moment for it (the nodes leave at about the same
    time), and for its reason when the first one it records is only a lost connection (node 0
    then reads the cause from the nodes' logs). This node's own cause, when it had one, is said
    at once."""
    deadline = time.monotonic() + 30.0
    own = node_end.last_cause(rd.node_log(node)) if code else ""
    state = None
    while time.monotonic() < deadline:
        try:
            state = rd.read_state()
        except StateError:
            break
        if state.status != RUNNING and (own or state.status != FAILED or not node_end.lost_a_peer(state.reason)):
            break
        time.sleep(0.2)
    if state is None or state.status == RUNNING:
        print(f"node {node}: its ranks ended (exit code {code}); node 0 has not recorded the run's end yet "
              f"(cockpit status {rd.id})", flush=True)
        return exit_codes.RUN_FAILED if code else exit_codes.OK
    print(f"run         {rd.path}  [{state.status}] step {state.step}/{state.max_steps}", flush=True)
    print(f"log         {rd.node_log(node)}", flush=True)
    if state.status == FAILED:
        print(f"error: run {rd.id} failed: {f'node {node}: {own}' if own else state.reason}", file=sys.stderr, flush=True)
    return exit_codes.for_run(state)
