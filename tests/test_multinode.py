"""A run across machines, as two "nodes" on one host: two `cockpit --headless run --nodes 2`
launches (node ranks 0 and 1) meeting at a loopback rendezvous, gloo, one rank each; the Slurm
script and the engine command its srun line runs; the one-line refusals."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
from conftest import PATIENCE, cockpit
from test_distributed import DDP, assert_same_weights, losses, run_dir, wait_for

from cockpit import slurm
from runspec.config.schema import parse_endpoint
from runspec.run import events
from runspec.run.rundir import RunDir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node(runs_dir, config, rank: int, rdzv: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cockpit", "--runs-dir", str(runs_dir), "--headless", "run",
                             str(config), "--name", "multi", "--nodes", "2", "--node-rank", str(rank), "--rdzv", rdzv,
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def starts(rd: RunDir) -> list[dict]:
    return [e.data for e in events.read_events(rd.events) if e.kind == events.START]


@pytest.mark.slow
def test_two_nodes_on_one_host_train_one_run_like_one_process_accumulating_and_resume_on_one(tmp_path, runs_dir):
    cfg = tmp_path / "ddp.toml"
    cfg.write_text(tomli_w.dumps(DDP))
    rdzv = f"127.0.0.1:{free_port()}"
    follower = node(runs_dir, cfg, 1, rdzv)  # the nodes may start in any order: node 1 waits for node 0's run
    leader = node(runs_dir, cfg, 0, rdzv)
    out0, _ = leader.communicate(timeout=PATIENCE)
    out1, _ = follower.communicate(timeout=PATIENCE)
    assert leader.returncode == 0 and follower.returncode == 0, (out0, out1)
    two = run_dir(runs_dir, "multi")
    assert f"joining {two.id} as node 1" in out1 and "[completed] step 8/8" in out1
    r = cockpit("--runs-dir", str(runs_dir), "--headless", "run", str(cfg), "--name", "one", "--set", "train.grad_accum=2")
    assert r.returncode == 0, r.stdout + r.stderr
    one = run_dir(runs_dir, "one")
    steps = [e.step for e in events.read_events(two.events) if e.kind == events.STEP]
    assert steps == list(range(1, 9))  # one event stream: node 1 wrote none of it
    la, lb = losses(one), losses(two)
    for step in la:
        assert abs(la[step] - lb[step]) < 1e-5, (step, la[step], lb[step])
    assert_same_weights(one, two)
    (start,) = starts(two)
    assert start["world_size"] == 2 and start["nodes"] == 2 and start["tokens_per_step"] == 2 * 4 * 32
    assert "on node 0 of 2" in two.log.read_text() and "training multi-" in two.log.read_text()
    node1 = two.node_log(1).read_text()
    assert "launching 1 ranks on node 1 of 2" in node1 and "training multi-" not in node1  # rank 0 speaks
    assert sorted(p.name for p in two.path.glob("engine*.log")) == ["engine.log", "engine.node1.log"]
    # resumed on one node: the data stream continues, the global batch halves
    r = cockpit("--runs-dir", str(runs_dir), "--headless", "resume", two.id, "--nodes", "1", "--max-steps", "12")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [s["world_size"] for s in starts(two)] == [2, 1]
    last = [e.data["metrics"] for e in events.read_events(two.events) if e.kind == events.STEP][-1]
    assert last["train/tokens"] == 8 * 2 * 4 * 32 + 4 * 4 * 32


def two_nodes_training(tmp_path, runs_dir) -> tuple[subprocess.Popen, subprocess.Popen, RunDir]:
    """Node 0 and node 1 of a long run, once both have trained 10 steps."""
    cfg = tmp_path / "ddp.toml"
    cfg.write_text(tomli_w.dumps(DDP))
    rdzv = f"127.0.0.1:{free_port()}"
    leader = node(runs_dir, cfg, 0, rdzv, "--set", "train.max_steps=100000", "--set", "log.every=5")
    follower = node(runs_dir, cfg, 1, rdzv)
    wait_for(lambda: any(p.name.startswith("multi-") for p in runs_dir.iterdir()), "node 0's run")
    rd = run_dir(runs_dir, "multi")
    wait_for(lambda: rd.events.exists() and max(losses(rd), default=0) >= 10, "10 steps on both nodes")
    return leader, follower, rd


@pytest.mark.slow
def test_a_ctrl_c_on_the_second_node_stops_the_whole_run_with_a_checkpoint(tmp_path, runs_dir):
    leader, follower, rd = two_nodes_training(tmp_path, runs_dir)
    follower.send_signal(signal.SIGINT)
    out1, _ = follower.communicate(timeout=PATIENCE)
    out0, _ = leader.communicate(timeout=PATIENCE)
    state = json.loads(rd.state_file.read_text())
    assert state["status"] == "stopped", (state, out0, out1)
    assert leader.returncode == 3 and follower.returncode == 3, (out0, out1)  # exit_codes.RUN_STOPPED on both
    assert "every node stops at the same step" in out1 and "[stopped]" in out1
    assert rd.checkpoint_steps()[-1] == state["step"] > 10


@pytest.mark.slow
def test_the_slurm_script_asks_for_the_nodes_and_its_srun_line_trains_the_run(tmp_path, runs_dir):
    cfg = tmp_path / "ddp.toml"
    cfg.write_text(tomli_w.dumps(DDP))
    r = cockpit("--runs-dir", str(runs_dir), "slurm", str(cfg), "--nodes", "2", "--gpus-per-node", "0",
                "--time", "1:30", "--partition", "cpu", "--sbatch=--constraint=x86", "--name", "sl", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert not list(runs_dir.glob("sl-*"))  # a dry run creates nothing
    d = slurm.directives(r.stdout)
    assert d["--nodes"] == "2" and d["--ntasks-per-node"] == "1" and d["--time"] == "1:30:00"
    assert d["--partition"] == "cpu" and d["--constraint"] == "x86" and d["--signal"] == "TERM@120"
    assert "--gpus-per-node" not in d  # CPU ranks: no GPU asked for
    r = cockpit("--runs-dir", str(runs_dir), "slurm", str(cfg), "--nodes", "2", "--gpus-per-node", "0", "--name", "sl")
    assert r.returncode == 0, r.stderr
    rd = run_dir(runs_dir, "sl")
    script = (rd.path / slurm.SCRIPT_NAME).read_text()
    assert json.loads(rd.state_file.read_text())["status"] == "queued"  # visible before the job starts
    assert slurm.directives(script)["--output"] == f"{rd.path}/slurm-%j.out"
    assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0  # bash parses it
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    words = shlex.split(srun.replace("$head_node:$port", "127.0.0.1:" + str(free_port())))
    command = words[words.index(sys.executable):]
    assert command[1:5] == ["-m", "engine", "train", str(rd.path)] and "--own-log" in command
    # what srun starts on each node: the same command, the node rank from $SLURM_NODEID
    procs = [subprocess.Popen(command, env={**os.environ, "SLURM_NODEID": str(k)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in (1, 0)]
    outs = [p.communicate(timeout=PATIENCE)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs == ["", ""]  # everything went to the logs
    state = json.loads(rd.state_file.read_text())
    assert state["status"] == "completed" and state["step"] == 8
    assert "training sl-" in rd.log.read_text() and "node 1 of 2" in rd.node_log(1).read_text()


@pytest.mark.slow
def test_multinode_bad_input_is_one_line_and_creates_nothing(tmp_path, runs_dir, monkeypatch):
    cfg = tmp_path / "ddp.toml"
    cfg.write_text(tomli_w.dumps(DDP))
    base = ("--runs-dir", str(runs_dir), "--headless", "run", str(cfg))
    cases = [
        ((*base, "--nodes", "2"), "needs --rdzv HOST:PORT"),
        ((*base, "--nodes", "2", "--rdzv", "nohost"), "[train] rdzv"),
        ((*base, "--nodes", "2", "--rdzv", "h:70000"), "a port 1-65535"),
        ((*base, "--node-rank", "1"), "this run is on one machine"),
        ((*base, "--nodes", "2", "--node-rank", "2", "--rdzv", "h:1"), "node ranks run 0..1"),
        ((*base, "--nodes", "2", "--rdzv", "h:1", "--seeds", "2"), "--seeds with --nodes"),
        (("--runs-dir", str(runs_dir), "queue", "add", str(cfg), "--set", "train.nodes=2"), "is started on each of them"),
        (("--runs-dir", str(runs_dir), "slurm", str(cfg), "--time", "90"), "--time '90'"),
        (("--runs-dir", str(runs_dir), "slurm", str(cfg), "--set", "train.rdzv='h:1'"), "remove rdzv"),
        (("--runs-dir", str(runs_dir), "slurm", str(cfg), "--nodes", "2"), "--gpus-per-node 0"),
    ]
    for args, message in cases:
        r = cockpit(*args)
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], (args, r.stdout, r.stderr)
    assert not runs_dir.exists() or not list(runs_dir.glob("ddp-*"))
    # node K with nothing to join gives up, saying what to do
    monkeypatch.setattr("cockpit.nodes.JOIN_WAIT_S", 0.0)
    from cockpit.nodes import find_joinable
    from cockpit.runs import RunError, check_config

    with pytest.raises(RunError, match="start node 0 first"):
        find_joinable(runs_dir, check_config(cfg, ["train.nodes=2", "train.rdzv='h:1'"]), None, wait_s=0.0)


def test_endpoints_and_slurm_times_parse_or_say_why():
    assert parse_endpoint("node001:29500") == ("node001", 29500)
    assert parse_endpoint("[::1]:80") == ("::1", 80)
    for bad in ("node001", ":80", "h:0", "h:x"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_endpoint(bad)
    assert slurm.parse_time("4:00") == "4:00:00" and slurm.parse_time("1-2:30") == "1-2:30:00"
    assert slurm.parse_time("0:05:30") == "0:05:30"
    for bad in ("90", "4:60", "a:00"):
        with pytest.raises(slurm.SlurmError):
            slurm.parse_time(bad)
    text = slurm.script(Path("/runs/x"), slurm.Job(3, 8, "2:00:00", "gpu", "acct"),
                        Path("/work"), python="/venv/bin/python")
    d = slurm.directives(text)
    assert d == {"--job-name": "x", "--nodes": "3", "--ntasks-per-node": "1", "--time": "2:00:00",
                 "--output": "/runs/x/slurm-%j.out", "--signal": "TERM@120", "--gpus-per-node": "8",
                 "--partition": "gpu", "--account": "acct"}
    assert "/venv/bin/python -m engine train /runs/x --rdzv \"$head_node:$port\" --own-log" in text


def ranks_of(pid: int) -> list[int]:
    """The ranks below a node's cockpit process: the children of its torchrun."""
    import psutil

    for p in psutil.Process(pid).children(recursive=True):
        try:
            if "torch.distributed.run" in p.cmdline():
                return [c.pid for c in p.children()]
        except psutil.Error:
            continue
    return []


@pytest.mark.slow
def test_a_node_whose_rank_dies_fails_the_run_with_the_cause(tmp_path, runs_dir):
    leader, follower, rd = two_nodes_training(tmp_path, runs_dir)
    (rank,) = ranks_of(follower.pid)
    os.kill(rank, signal.SIGKILL)  # the machine's rank dies as under the OOM killer
    out1, _ = follower.communicate(timeout=PATIENCE)
    out0, _ = leader.communicate(timeout=PATIENCE)
    state = json.loads(rd.state_file.read_text())
    assert state["status"] == "failed", (state, out0, out1)
    assert leader.returncode == 1 and follower.returncode == 1, (out0, out1)
    assert state["reason"].startswith("node 1: rank 1 was killed by SIGKILL"), state["reason"]
    assert "engine.node1.log" in state["reason"]
    assert "failed: node 1: rank 1 was killed by SIGKILL" in out1  # node 1's command says the cause too
    errors = [e.data["reason"] for e in events.read_events(rd.events) if e.kind == events.ERROR]
    assert errors and errors[-1] == state["reason"], errors  # the consequence first, then the cause


def test_a_failed_run_across_nodes_takes_its_reason_from_the_node_that_had_a_cause(tmp_path):
    from runspec.run import node_end as launch

    logs = {k: tmp_path / f"engine.node{k}.log" for k in (1, 2, 3)}
    logs[1].write_text("launching 1 ranks on node 1 of 4\n" + launch.ended_line(1, 1, "rank 1 exited with code 1: "
                       "RuntimeError: Connection closed by peer [10.0.0.1]:29500") + "\n")
    logs[2].write_text(launch.ended_line(2, 1, "rank 2 was killed by SIGKILL; torchrun ended the other ranks "
                                         "(see engine.log)") + "\n")
    assert launch.lost_a_peer("RuntimeError: [pair.cc:553] Connection closed by peer [127.0.0.1]:35727")
    assert not launch.lost_a_peer("rank 2 was killed by SIGKILL")
    # node 1 only lost a peer, node 2 had the cause; node 3 has not written yet and is not waited for
    assert launch.node_cause(logs, wait_s=0.0) == ("node 2: rank 2 was killed by SIGKILL; torchrun ended the other "
                                                  "ranks (see engine.node2.log)")
    del logs[2]
    assert launch.node_cause(logs, wait_s=0.0).startswith("node 3 did not report how its ranks ended")
    logs[3].write_text(launch.ended_line(3, 0, "") + "\n")
    assert launch.node_cause(logs, wait_s=0.0) == ""  # only consequences: rank 0's own reason stands
