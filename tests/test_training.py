"""Training runs end to end in real engine subprocesses: exact resume, clean stops, bad data."""

import signal
import subprocess
import sys
import time

import pytest

from cockpit.runs import create_run, prepare_resume
from engine import events
from engine.corpus import CorpusError
from engine.rundir import RunDir


def engine_train(rd: RunDir, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "train", str(rd.path)], capture_output=True,
                          text=True, timeout=timeout)


def step_losses(rd: RunDir) -> dict[int, float]:
    return {e.step: e.metrics["train/loss"] for e in events.read_events(rd.events) if e.kind == events.STEP}


def test_resume_is_exact(write_config, runs_dir):
    """10 steps + resume + 10 steps == 20 straight steps (fp32, CPU, same seed), with dropout
    on so the RNG state is part of what must be restored."""
    extra = {"train": {"max_steps": 20, "checkpoint_every": 0}, "optim": {"decay_steps": 20},
             "model": {"dropout": 0.1}, "log": {"every": 1}, "eval": {"every": 5}}
    straight = create_run(write_config("straight", extra), runs_dir=runs_dir)
    assert engine_train(straight).returncode == 0
    extra["train"]["max_steps"] = 10
    split = create_run(write_config("split", extra), runs_dir=runs_dir)
    assert engine_train(split).returncode == 0
    assert split.read_state().status == "completed" and split.checkpoint_steps() == [10]
    prepare_resume(split, max_steps=20, max_time=None)
    assert engine_train(split).returncode == 0
    a, b = step_losses(straight), step_losses(split)
    assert sorted(a) == sorted(b) == list(range(1, 21))
    assert [a[s] for s in range(1, 21)] == [b[s] for s in range(1, 21)]  # bit-exact
    start_events = [e for e in events.read_events(split.events) if e.kind == events.START]
    assert start_events[-1].get("resumed_from") == 10


def test_sigterm_checkpoints_and_stops_then_resume_finishes(write_config, runs_dir):
    cfg = write_config("long", {"train": {"max_steps": 100000, "checkpoint_every": 0}, "log": {"every": 1},
                                "eval": {"every": 0}})
    rd = create_run(cfg, runs_dir=runs_dir)
    proc = subprocess.Popen([sys.executable, "-m", "engine", "train", str(rd.path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline and len(step_losses(rd)) < 5:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    state = rd.read_state()
    assert state.status == "stopped" and "SIGTERM" in state.reason
    stopped_at = state.step
    assert stopped_at >= 5 and rd.checkpoint_steps() == [stopped_at]
    assert [h["status"] for h in state.history] == ["queued", "running", "stopped"]
    prepare_resume(rd, max_steps=stopped_at + 7, max_time=None)
    assert engine_train(rd).returncode == 0
    state = rd.read_state()
    assert state.status == "completed" and state.step == stopped_at + 7
    assert max(step_losses(rd)) == stopped_at + 7


def test_time_budget_stops_a_partial_run(write_config, runs_dir):
    rd = create_run(write_config("budget", {"train": {"max_steps": 10**6, "max_time": "0:00:03"}}), runs_dir=runs_dir)
    assert engine_train(rd).returncode == 0
    state = rd.read_state()
    assert state.status == "stopped" and "time budget 0:00:03 reached" in state.reason
    assert 0 < state.step < 10**6 and rd.checkpoint_steps()[-1] == state.step  # the stop is checkpointed


def test_bad_data_fails_before_training_and_touches_nothing_else(write_config, runs_dir, tmp_path):
    other = runs_dir / "other-run"
    other.mkdir()
    (other / "state.json").write_text('{"status": "completed"}')
    before = {p: p.stat().st_mtime_ns for p in runs_dir.rglob("*")}
    missing = tmp_path / "nowhere.parquet"
    with pytest.raises(CorpusError, match="does not exist"):  # cheap to know: refused before a run exists
        create_run(write_config("bad", {"data": {"path": str(missing)}}), runs_dir=runs_dir)
    assert {p: p.stat().st_mtime_ns for p in runs_dir.rglob("*")} == before
    blank = tmp_path / "blank.jsonl"  # only reading the text can tell: the engine fails with exit 2
    blank.write_text('{"text": ""}\n' * 50)
    rd = create_run(write_config("bad", {"data": {"path": str(blank)}}), runs_dir=runs_dir)
    result = engine_train(rd)
    assert result.returncode == 2
    state = rd.read_state()
    assert state.status == "failed" and str(blank) in state.reason and "empty" in state.reason
    assert str(blank) in result.stderr
    assert not rd.checkpoints.exists()
    assert {p: p.stat().st_mtime_ns for p in before} == before  # other runs untouched
    errors = [e for e in events.read_events(rd.events) if e.kind == events.ERROR]
    assert errors and errors[0].get("reason") == state.reason


def test_every_logged_metric_is_in_the_agreed_namespaces(write_config, runs_dir):
    rd = create_run(write_config("ns", {"model": {"output_projection": True, "tie_embeddings": False},
                                        "conviction": {"enabled": True}}), runs_dir=runs_dir)
    assert engine_train(rd).returncode == 0
    evs = events.read_events(rd.events)
    step = next(e for e in evs if e.kind == events.STEP)
    for key in ("train/loss", "train/lr", "train/tokens_per_s", "train/mfu", "train/grad_norm",
                "debug/hidden_norm", "debug/ce_loss", "debug/conviction_loss", "debug/grad_norm/embeddings",
                "debug/grad_norm/blocks", "debug/grad_norm/output_projection", "debug/grad_norm/lm_head",
                "debug/grad_norm/conviction_head"):
        assert key in step.metrics, key
    # train/loss is what is optimized: cross-entropy plus the weighted conviction term
    assert step.metrics["train/loss"] == pytest.approx(
        step.metrics["debug/ce_loss"] + 0.01 * step.metrics["debug/conviction_loss"], rel=1e-4)
    assert all(k.split("/")[0] in ("train", "debug") for k in step.metrics)
    ev = next(e for e in evs if e.kind == events.EVAL)
    assert set(ev.metrics) == {"train_benchmarks/loss", "train_benchmarks/bpb"}
    final = next(e for e in evs if e.kind == events.FINAL)
    assert final.metrics["final_benchmarks/bpb"] > 0 and final.metrics["final_benchmarks/tokens"] == 4 * 4 * 32
    assert 0.0 <= final.metrics["final_benchmarks/conviction_auroc_top1"] <= 1.0
    assert -1.0 <= final.metrics["final_benchmarks/conviction_spearman_loss"] <= 1.0
    assert any(e.kind == events.SAMPLE and e.get("text") for e in evs)
    start = next(e for e in evs if e.kind == events.START)
    assert start.get("params") > 0 and start.get("device") == "cpu"
