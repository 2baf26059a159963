"""Training runs end to end in real engine subprocesses: exact resume, clean stops, bad data."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import PATIENCE, cockpit

from cockpit.runs import create_run, prepare_resume
from runspec.data.corpus import CorpusError
from runspec.run import events, metrics
from runspec.run.rundir import RunDir


def engine_train(rd: RunDir, timeout: int = PATIENCE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "train", str(rd.path)], capture_output=True,
                          text=True, timeout=timeout)


def step_losses(rd: RunDir) -> dict[int, float]:
    return {e.step: e.metrics["train/loss"] for e in events.read_events(rd.events) if e.kind == events.STEP}


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert proc.wait(timeout=PATIENCE) == 0
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


@pytest.mark.slow
def test_time_budget_stops_a_partial_run(write_config, runs_dir):
    rd = create_run(write_config("budget", {"train": {"max_steps": 10**6, "max_time": "0:00:03"}}), runs_dir=runs_dir)
    assert engine_train(rd).returncode == 0
    state = rd.read_state()
    assert state.status == "stopped" and "time budget 0:00:03 reached" in state.reason
    assert 0 < state.step < 10**6 and rd.checkpoint_steps()[-1] == state.step  # the stop is checkpointed


@pytest.mark.slow
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


@pytest.mark.slow
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
    # train/loss is the LM's cross-entropy (comparable with validation); train/objective is what is
    # optimized: that plus the weighted conviction term
    assert step.metrics["train/loss"] == pytest.approx(step.metrics["debug/ce_loss"], rel=1e-6)
    assert step.metrics["train/objective"] == pytest.approx(
        step.metrics["debug/ce_loss"] + 0.01 * step.metrics["debug/conviction_loss"], rel=1e-4)
    assert all(k.split("/")[0] in ("train", "debug") for k in step.metrics)
    ev = next(e for e in evs if e.kind == events.EVAL)
    assert set(ev.metrics) == {"train_benchmarks/loss", "train_benchmarks/bpb", "train_benchmarks/bpc"}  # bytes: bpc too
    final = next(e for e in evs if e.kind == events.FINAL)
    assert final.metrics["final_benchmarks/bpb"] > 0 and final.metrics["final_benchmarks/tokens"] == 4 * 4 * 32
    assert 0.0 <= final.metrics["final_benchmarks/conviction_auroc_top1"] <= 1.0
    assert -1.0 <= final.metrics["final_benchmarks/conviction_spearman_loss"] <= 1.0
    assert any(e.kind == events.SAMPLE and e.get("text") for e in evs)
    logged = {k for e in evs if e.kind in (events.STEP, events.EVAL, events.FINAL) for k in e.metrics}
    assert [k for k in sorted(logged) if not metrics.registered(k)] == []  # every name is in the registry
    start = next(e for e in evs if e.kind == events.START)
    assert start.get("params") > 0 and start.get("device") == "cpu"


# -- faults and fixes ----------------------------------------------------------------------------

@pytest.mark.slow
def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one_and_says_so(write_config, runs_dir):
    """Before: a long torch message, the recorded step reset to 0, the intact older files ignored."""
    rd = create_run(write_config("ck", {"train": {"max_steps": 30, "checkpoint_every": 10},
                                        "optim": {"decay_steps": 40}}), runs_dir=runs_dir)
    assert engine_train(rd).returncode == 0 and rd.checkpoint_steps() == [10, 20, 30]
    newest = rd.checkpoints / "step_0000030.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # killed mid-copy, say
    r = cockpit("--headless", "--runs-dir", str(runs_dir), "resume", rd.id, "--max-steps", "40")
    assert r.returncode == 0, r.stderr
    assert "warning:" in r.stdout and "step_0000030.pt: cannot be loaded" in r.stdout
    assert "resuming from the newest intact checkpoint" in r.stdout
    # the CLI names no step it cannot vouch for; the step is the one the engine loaded (before: "from step 30")
    assert "from step 30" not in r.stdout and "resumed from step 20" in r.stdout
    starts = [e for e in events.read_events(rd.events) if e.kind == events.START]
    assert starts[-1].get("resumed_from") == 20
    assert rd.read_state().status == "completed" and rd.read_state().step == 40
    assert (rd.checkpoints / "step_0000030.pt.damaged").exists()  # kept for inspection, never chosen again


@pytest.mark.slow
def test_a_start_that_fails_on_checkpoints_never_lowers_the_recorded_step(write_config, runs_dir):
    rd = create_run(write_config("ck", {"train": {"max_steps": 20, "checkpoint_every": 10}}), runs_dir=runs_dir)
    assert engine_train(rd).returncode == 0 and rd.read_state().step == 20
    for f in rd.checkpoints.glob("step_*.pt"):
        f.write_bytes(b"PK\x03\x04 truncated")
    prepare_resume(rd, max_steps=30, max_time=None)
    result = engine_train(rd)
    assert result.returncode == 2
    state = rd.read_state()
    assert state.status == "failed" and "every checkpoint is damaged" in state.reason and state.step == 20


@pytest.mark.slow
def test_a_diverged_run_fails_at_the_step_it_happens_and_keeps_the_last_good_checkpoint(write_config, runs_dir):
    """Before: 'completed' with a NaN validation loss, or a failure that blamed sampling."""
    cfg = write_config("nan", {"train": {"max_steps": 200, "checkpoint_every": 5},
                               "optim": {"lr": 1e6, "warmup_steps": 0, "schedule": "constant"},
                               "log": {"every": 50}, "eval": {"every": 0}})
    r = cockpit("--headless", "--runs-dir", str(runs_dir), "run", str(cfg))
    assert r.returncode == 1 and "loss became" in r.stderr and r.stderr.count("\n") == 1
    (rd,) = [RunDir(p) for p in runs_dir.iterdir() if not p.name.startswith(".")]
    state = rd.read_state()
    m = re.search(r"loss became (nan|inf) at step (\d+) \((last finite loss [\d.]+ at step \d+|no finite loss "
                  r"before it), lr 1e\+06\); (the last good checkpoint is step (\d+)|no checkpoint was written)",
                  state.reason)
    assert state.status == "failed" and m, state.reason
    bad = int(m.group(2))
    assert all(s < bad for s in rd.checkpoint_steps())  # nothing written after it went bad
    assert state.step == (rd.checkpoint_steps() or [0])[-1]
    assert bad < 200 and not any(e.kind == events.FINAL for e in events.read_events(rd.events))


@pytest.mark.slow
def test_stale_temporary_files_of_killed_writers_are_removed(write_config, runs_dir):
    rd = create_run(write_config("tmp", {"train": {"max_steps": 10}}), runs_dir=runs_dir)
    rd.checkpoints.mkdir()
    stale = rd.checkpoints / ".step_0000010.pt.99999.tmp"
    stale.write_bytes(b"\0" * 1_000_000)  # the 92-229 MB files of a killed checkpoint write, in small
    old_state_tmp = rd.path / ".state.json.abc123.tmp"
    old_state_tmp.write_text("{")
    os.utime(old_state_tmp, (time.time() - 3600, time.time() - 3600))
    result = engine_train(rd)
    assert result.returncode == 0
    assert not stale.exists() and not old_state_tmp.exists()
    assert f"removed {stale.name}, a checkpoint write that never finished" in result.stdout


def test_a_split_of_exactly_one_window_trains_and_the_last_window_is_sampled(tmp_path):
    """Before: block_size + 1 tokens passed the check, then sampling failed; the last valid
    window of a split was never drawn."""
    from engine.trainer import window_count

    assert window_count(33, 32) == 1  # block_size + 1 tokens: one window, at offset 0
    g = torch.Generator().manual_seed(0)
    drawn = set(torch.randint(window_count(34, 32), (200,), generator=g).tolist())
    assert drawn == {0, 1}  # offset 1 = len - block_size - 1, the last window, is drawn


@pytest.mark.slow
def test_hidden_norm_is_logged_without_per_module_grad_norms(write_config, runs_dir):
    rd = create_run(write_config("hn", {"log": {"grad_norms": False}}), runs_dir=runs_dir)
    assert engine_train(rd).returncode == 0
    step = next(e for e in events.read_events(rd.events) if e.kind == events.STEP)
    assert step.metrics["debug/hidden_norm"] > 0
    assert not any(k.startswith("debug/grad_norm/") for k in step.metrics)
