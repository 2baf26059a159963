"""Several ranks on the CPU (torchrun, gloo, 2 processes): DDP against one process with gradient
accumulation, stop and resume, a rank that dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import tomli_w
import torch
from conftest import PATIENCE, cockpit

from runspec.run import events
from runspec.run.process import children, pid_exists
from runspec.run.rundir import RunDir

# a model big enough that a step takes a few milliseconds (a stop lands mid-run), small enough
# that 2 ranks on 2 busy cores still finish in seconds; no warm-up so the weights move at once
DDP = {
    "model": {"n_layer": 2, "d_model": 48, "n_head": 2, "block_size": 32},
    "train": {"max_steps": 8, "batch_size": 4, "checkpoint_every": 0, "device": "cpu"},
    "optim": {"warmup_steps": 0, "lr": 3e-3},
    "eval": {"every": 0, "sample_tokens": 0, "final": False},
    "log": {"every": 1, "wandb": False},
}


def run_dir(runs_dir, name: str) -> RunDir:
    (path,) = [p for p in runs_dir.iterdir() if p.name.startswith(name + "-")]
    return RunDir(path)


def losses(rd: RunDir) -> dict[int, float]:
    return {e.step: e.data["metrics"]["train/loss"] for e in events.read_events(rd.events) if e.kind == events.STEP}


def weights(rd: RunDir) -> dict[str, torch.Tensor]:
    newest = sorted(rd.checkpoints.glob("step_*.pt"))[-1]
    return torch.load(newest, weights_only=True)["model"]


def assert_same_weights(a: RunDir, b: RunDir, tol: float = 1e-5) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    worst = max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)
    assert worst < tol, worst


def train(runs_dir, config, name: str, *sets: str) -> RunDir:
    args = [a for s in sets for a in ("--set", s)]
    r = cockpit("--runs-dir", str(runs_dir), "--headless", "run", str(config), "--name", name, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return run_dir(runs_dir, name)


def with_sections(**extra) -> dict:
    out = {k: dict(v) for k, v in DDP.items()}
    for section, values in extra.items():
        out[section] = {**out.get(section, {}), **values} if isinstance(values, dict) else values
    return out


# what trains under several ranks: every variant matches one process accumulating the ranks' batches
VARIANTS = {
    "ddp": with_sections(),
    "fsdp+conviction": with_sections(train={**DDP["train"], "fsdp": True}, conviction={"enabled": True}),
    "ddp+conviction+t12": with_sections(conviction={"enabled": True}, aux={"intermediate": True, "targets": 1}),
    "ddp+mla+moe": with_sections(model={**DDP["model"], "attention": "mla",
                                        "ffn": {"kind": "moe", "experts": 3, "top_k": 2}}),
    # growth at step 3 (DDP is rebuilt around the new model), LoRA adapters from step 6
    "ddp+growth+lora": with_sections(stage=[{"at_step": 3, "grow": {"d_model": 96, "ramp_steps": 2}},
                                            {"at_step": 6, "lora": {"rank": 2}}]),
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_two_ranks_match_one_process_accumulating_their_batches(tmp_path, runs_dir, variant):
    cfg = tmp_path / "ddp.toml"
    cfg.write_text(tomli_w.dumps(VARIANTS[variant]))
    one = train(runs_dir, cfg, "one", "train.grad_accum=2", "train.fsdp=false")
    two = train(runs_dir, cfg, "two", "train.gpus=2")
    la, lb = losses(one), losses(two)
    assert sorted(la) == list(range(1, 9)) and sorted(lb) == sorted(la)
    assert la[8] < la[1] - 0.05  # it learned something: the comparison is not between two idle models
    for step in la:
        assert abs(la[step] - lb[step]) < 1e-5, (step, la[step], lb[step])
    assert_same_weights(one, two)
    start = next(e for e in events.read_events(two.events) if e.kind == events.START).data
    assert start["world_size"] == 2 and start["tokens_per_step"] == 2 * 4 * 32  # global, per step
    last = [e for e in events.read_events(two.events) if e.kind == events.STEP][-1].data["metrics"]
    assert last["train/tokens"] == 8 * 2 * 4 * 32
    log = two.log.read_text()
    assert "launching 2 ranks" in log and log.count("training two-") == 1  # rank 0 speaks for both


def wait_for(predicate, what: str, timeout: float = PATIENCE):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def start(runs_dir, config, name: str, *sets: str) -> tuple[subprocess.Popen, RunDir]:
    args = [a for s in sets for a in ("--set", s)]
    proc = subprocess.Popen([sys.executable, "-m", "cockpit", "--runs-dir", str(runs_dir), "--headless", "run",
                             str(config), "--name", name, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    wait_for(lambda: any(p.name.startswith(name + "-") for p in runs_dir.iterdir()), "the run directory")
    return proc, run_dir(runs_dir, name)


def state(rd: RunDir) -> dict:
    return json.loads(rd.state_file.read_text())


def trained_steps(rd: RunDir) -> int:
    return max(losses(rd), default=0)


@pytest.mark.slow
def test_a_stopped_two_rank_run_resumes_to_the_same_weights(write_config, runs_dir):
    cfg = write_config("ddp", base=DDP)
    sets = ("train.gpus=2", "train.max_steps=300", "log.every=5")
    whole = train(runs_dir, cfg, "whole", *sets)
    proc, cut = start(runs_dir, cfg, "cut", *sets)
    wait_for(lambda: trained_steps(cut) >= 20, "20 steps")
    launcher = state(cut)["pid"]
    ranks = [r for agent in children(launcher) for r in children(agent)]
    assert len(ranks) == 2
    os.kill(launcher, signal.SIGTERM)  # as cockpit queue stop does: the run's recorded pid is the launcher's
    proc.communicate(timeout=PATIENCE)
    s = state(cut)
    assert s["status"] == "stopped", s
    assert s["step"] < 300 and "stopped by SIGTERM" in s["reason"]
    assert not any(pid_exists(p) for p in [launcher, *ranks])
    r = cockpit("--runs-dir", str(runs_dir), "--headless", "resume", cut.id)
    assert r.returncode == 0, r.stdout + r.stderr
    assert state(cut)["status"] == "completed"
    assert_same_weights(whole, cut)
    # (a logged loss is the mean since the previous log step: compare intervals wholly after the stop)
    after = {k: v for k, v in losses(cut).items() if k - 5 >= s["step"]}
    assert after and all(abs(losses(whole)[k] - v) < 1e-5 for k, v in after.items())


@pytest.mark.slow
def test_a_rank_that_dies_fails_the_run_with_a_reason(write_config, runs_dir):
    cfg = write_config("ddp", base=DDP)
    proc, rd = start(runs_dir, cfg, "dies", "train.gpus=2", "train.max_steps=100000", "log.every=5")
    wait_for(lambda: trained_steps(rd) >= 5, "5 steps")
    launcher = state(rd)["pid"]
    (agent,) = children(launcher)
    ranks = children(agent)
    rank1 = next(p for p in ranks if b"RANK=1\0" in open(f"/proc/{p}/environ", "rb").read())
    os.kill(rank1, signal.SIGKILL)
    proc.communicate(timeout=PATIENCE)  # bounded: the launcher leaves once torchrun has ended the ranks
    s = state(rd)
    assert s["status"] == "failed", s
    assert s["reason"].startswith("rank 1 was killed by SIGKILL"), s["reason"]
    wait_for(lambda: not any(pid_exists(p) for p in ranks), "the other rank to end")
    errors = [e for e in events.read_events(rd.events) if e.kind == events.ERROR]
    assert errors and errors[-1].data["reason"] == s["reason"]


@pytest.mark.slow
@pytest.mark.parametrize("key,value,message", [("gpus", "0", "[train] gpus")])
def test_bad_gpus_is_one_line(write_config, runs_dir, key, value, message):
    r = cockpit("--runs-dir", str(runs_dir), "--headless", "run", str(write_config("ddp", base=DDP)),
                "--set", f"train.{key}={value}")
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def spans(rd: RunDir) -> tuple[float, float, str]:
    """(started, ended, GPUs held) of a run's one launch."""
    history = state(rd)["history"]
    began = next(h for h in history if h["status"] == "running")
    ended = next(h for h in history if h["status"] in ("completed", "failed", "stopped"))
    assert ended["status"] == "completed", history
    return began["time"], ended["time"], began["slot"]


@pytest.mark.parametrize("gpus,asks,expect,filler", [
    # two GPUs; queue: 1, 2, 1, 1. The 2-GPU run at the head waits for the first to end (the
    # third may not fill the free GPU: that would leave the head fewer than it needs); the last
    # two then run side by side
    ("0,1", [1, 2, 1, 1], [("0", []), ("0,1", [0]), ("0", [1]), ("1", [1])], None),
    # three GPUs; queue: 2, 2, 1. The second waits for GPUs; the 1-GPU run behind it fills the
    # free one at once (the head still has two GPUs no filler holds)
    ("0,1,2", [2, 2, 1], [("0,1", []), ("0,1", [0]), ("2", [])], 2),
], ids=["head-waits", "backfill"])
@pytest.mark.slow
def test_the_worker_hands_out_gpus_in_the_documented_order(write_config, runs_dir, gpus, asks, expect, filler):
    from cockpit.queue import Queue

    q = Queue(runs_dir)
    cfg = write_config("ddp", base=DDP)
    ids = []
    for i, n in enumerate(asks):
        (rd,) = q.add([str(cfg)], name=f"r{i}-{n}gpu", overrides=[f"train.gpus={n}", "train.max_steps=30"])
        ids.append(rd.id)
    r = subprocess.run([sys.executable, "-m", "cockpit", "--runs-dir", str(runs_dir), "worker", "--gpus", gpus,
                        "--once"], capture_output=True, text=True, timeout=PATIENCE,
                       env={**os.environ, "COCKPIT_FAKE_GPUS": str(len(gpus.split(",")))})
    assert r.returncode == 0, r.stdout + r.stderr
    got = {rid: spans(RunDir(runs_dir / rid)) for rid in ids}
    for rid, (slot, after) in zip(ids, expect):
        began, _, held = got[rid]
        assert held == slot, (rid, held, r.stdout)
        for k in after:  # started only once run k had ended
            assert began >= got[ids[k]][1], (rid, ids[k], r.stdout)
    if filler is not None:
        assert got[ids[filler]][0] < got[ids[0]][1]  # it ran beside the first run
        assert f"started {ids[filler]}" in r.stdout and "(filling a gap)" in r.stdout
    else:
        assert "filling a gap" not in r.stdout


@pytest.mark.slow
def test_a_two_rank_run_resumes_on_one_with_the_data_stream_continuing(write_config, runs_dir):
    cfg = write_config("ddp", base=DDP)
    proc, rd = start(runs_dir, cfg, "shrink", "train.gpus=2", "train.max_steps=100000", "log.every=5")
    wait_for(lambda: trained_steps(rd) >= 10, "10 steps")
    os.kill(state(rd)["pid"], signal.SIGTERM)
    proc.communicate(timeout=PATIENCE)
    stopped = state(rd)["step"]
    r = cockpit("--runs-dir", str(runs_dir), "--headless", "resume", rd.id, "--nproc", "1",
                "--max-steps", str(stopped + 10))
    assert r.returncode == 0, r.stdout + r.stderr
    starts = [e.data for e in events.read_events(rd.events) if e.kind == events.START]
    assert [s["world_size"] for s in starts] == [2, 1]
    assert starts[1]["tokens_per_step"] == starts[0]["tokens_per_step"] // 2  # per-rank batch: the global halves
    steps = [e.data["metrics"] for e in events.read_events(rd.events) if e.kind == events.STEP]
    assert steps[-1]["train/tokens"] == stopped * 2 * 4 * 32 + 10 * 4 * 32  # counted on from where it stopped
    # an FSDP checkpoint holds whole tensors by name: it resumes in one process too
    r = cockpit("--runs-dir", str(runs_dir), "--headless", "run", str(cfg), "--name", "sharded",
                "--set", "train.gpus=2", "--set", "train.fsdp=true", "--set", "train.max_steps=3")
    assert r.returncode == 0, r.stdout + r.stderr
    sharded = run_dir(runs_dir, "sharded")
    r = cockpit("--runs-dir", str(runs_dir), "--headless", "resume", sharded.id, "--max-steps", "5", "--nproc", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert state(sharded)["status"] == "completed" and state(sharded)["step"] == 5
