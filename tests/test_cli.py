"""`cockpit` end to end, as a user runs it: real subprocesses, real files, real wandb offline."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import PATIENCE, ROOT, cockpit

from engine.model import build_model
from runspec.config.load import config_from_dict
from runspec.config.schema import tomllib
from runspec.run import events
from runspec.run.rundir import RunDir


def only_run(runs_dir) -> RunDir:
    (run,) = [d for d in runs_dir.iterdir() if d.is_dir()]
    return RunDir(run)


@pytest.mark.slow
def test_headless_run_end_to_end(write_config, runs_dir):
    cfg = write_config("e2e", {"log": {"wandb": True}})
    r = cockpit("--headless", "--runs-dir", str(runs_dir), "run", str(cfg), "--name", "first")
    assert r.returncode == 0, r.stderr
    rd = only_run(runs_dir)
    assert rd.id.startswith("first-")
    assert rd.config.read_text() == cfg.read_text() and rd.resolved.exists()
    state = rd.read_state()
    assert state.status == "completed" and state.step == 20
    assert [h["status"] for h in state.history] == ["queued", "running", "completed"]
    kinds = {e.kind for e in events.read_events(rd.events)}
    assert {"start", "step", "eval", "final", "checkpoint", "sample", "status"} <= kinds
    # the checkpoint loads into a model built from resolved.toml
    resolved = config_from_dict(tomllib.loads(rd.resolved.read_text()))
    payload = torch.load(rd.latest_checkpoint(), weights_only=True)
    model = build_model(resolved, payload["vocab_size"])
    model.load_state_dict(payload["model"])
    assert payload["step"] == 20
    # a wandb offline run directory, with the final benchmarks in its summary
    (wandb_run,) = rd.wandb.glob("offline-run-*")
    assert list(wandb_run.glob("*.wandb"))
    assert str(rd.latest_checkpoint()) in r.stdout and str(wandb_run) in r.stdout
    assert "final       val loss" in r.stdout


@pytest.mark.slow
def test_config_error_is_one_line_and_creates_nothing(write_config, runs_dir):
    cfg = write_config("bad", {"model": {"n_layers": 3}})
    r = cockpit("--headless", "--runs-dir", str(runs_dir), "run", str(cfg))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert str(cfg) in r.stderr and "[model] n_layers" in r.stderr and "did you mean 'n_layer'" in r.stderr
    assert list(runs_dir.iterdir()) == []


@pytest.mark.slow
def test_missing_data_is_refused_before_a_run_exists(write_config, runs_dir, tmp_path):
    cfg = write_config("nodata", {"data": {"path": str(tmp_path / "missing.txt")}})
    r = cockpit("--headless", "--runs-dir", str(runs_dir), "run", str(cfg))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "missing.txt: does not exist" in r.stderr
    assert [p for p in runs_dir.iterdir() if not p.name.startswith(".")] == []


@pytest.mark.slow
def test_data_that_fails_in_the_engine_exits_2_with_the_reason(write_config, runs_dir, tmp_path):
    data = tmp_path / "latin1.txt"
    data.write_bytes("caf\xe9 ".encode("latin-1") * 100)
    r = cockpit("--headless", "--runs-dir", str(runs_dir), "run", str(write_config("bad", {"data": {"path": str(data)}})))
    assert r.returncode == 2, r.stderr
    assert "failed:" in r.stderr and "not valid UTF-8" in r.stderr
    assert only_run(runs_dir).read_state().status == "failed"


def long_headless_run(write_config, runs_dir, steps: int):
    """A headless run of a very long config, once its engine has logged ``steps`` steps."""
    cfg = write_config("long", {"train": {"max_steps": 100000, "checkpoint_every": 0}, "log": {"every": 1},
                                "eval": {"every": 0}})
    proc = subprocess.Popen([sys.executable, "-m", "cockpit", "--headless", "--runs-dir", str(runs_dir), "run",
                             str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + PATIENCE
    while time.time() < deadline:
        runs = [d for d in runs_dir.iterdir() if d.is_dir() and not d.name.startswith(".")]
        if runs and len([e for e in events.read_events(RunDir(runs[0]).events) if e.kind == "step"]) >= steps:
            return proc, RunDir(runs[0])
        time.sleep(0.1)
    raise AssertionError(f"the run did not reach {steps} steps")


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_resume_continues(write_config, runs_dir):
    proc, _ = long_headless_run(write_config, runs_dir, steps=3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 3, err  # stopped before completing: not success (cockpit/exit_codes.py)
    rd = only_run(runs_dir)
    state = rd.read_state()
    assert state.status == "stopped" and "SIGINT" in state.reason and rd.checkpoint_steps() == [state.step]
    assert f"cockpit --headless resume {rd.id}" in out

    r = cockpit("--headless", "--runs-dir", str(runs_dir), "resume", rd.id[:8], "--max-steps", str(state.step + 5))
    assert r.returncode == 0, r.stderr
    assert rd.read_state().status == "completed" and rd.read_state().step == state.step + 5

    r = cockpit("--headless", "--runs-dir", str(runs_dir), "resume", rd.id)
    assert r.returncode == 2 and "already trained" in r.stderr and "--max-steps" in r.stderr


@pytest.mark.slow
def test_an_engine_killed_under_a_headless_run_is_exit_4_not_success(write_config, runs_dir):
    """Before: exit 0 with the reason on stdout, so `run && next` carried on after an OOM kill."""
    proc, rd = long_headless_run(write_config, runs_dir, steps=2)
    os.kill(rd.read_state().pid, signal.SIGKILL)  # as the kernel's OOM killer would
    out, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 4, (out, err)
    state = only_run(runs_dir).read_state()
    assert state.status == "interrupted" and "SIGKILL" in state.reason and "resume" in out


@pytest.mark.slow
def test_resume_of_an_unknown_run_says_so(runs_dir):
    r = cockpit("--headless", "--runs-dir", str(runs_dir), "resume", "nope")
    assert r.returncode == 2 and "no run 'nope'" in r.stderr


@pytest.mark.slow
def test_bench_train_reports_throughput_as_json(write_config):
    r = cockpit("bench", "train", str(write_config("bench")), "--steps", "4", "--warmup", "1", "--json")
    assert r.returncode == 0, r.stderr
    figures = json.loads(r.stdout)
    assert figures["tokens_per_s"] > 0 and figures["median_step_ms"] > 0
    assert figures["params"] > 0 and figures["device"] == "cpu" and figures["steps"] == 4
    assert figures["peak_memory_mb"] > 50  # the process peak on a CPU: torch alone is more


@pytest.mark.slow
def test_importing_the_cli_does_not_import_torch():
    code = "import sys, cockpit, cockpit.cli, cockpit.runs, cockpit.headless; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.strip() == "False", r.stderr
