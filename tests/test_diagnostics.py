"""Training diagnostics that mean what they say: module gradient norms before clipping, the
clip factor and share, the residual stream before the final norm, the optional weight norms,
update ratios and logit statistics, and TensorBoard's own reader on a run's event files."""

import math
import subprocess
import sys

import pytest
from conftest import PATIENCE

from cockpit.runs import create_run
from runspec.run import events, metrics

pytestmark = pytest.mark.slow  # real engine subprocesses


def train(rd) -> None:
    done = subprocess.run([sys.executable, "-m", "engine", "train", str(rd.path)], capture_output=True,
                          text=True, timeout=PATIENCE)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def clipped_run(tmp_path_factory):
    """A run where clipping is active at every step (grad_clip far below the gradient's norm),
    with every [log] switch on."""
    import tomli_w
    from conftest import TINY, merge

    root = tmp_path_factory.mktemp("diag")
    (root / "runs").mkdir()
    cfg = root / "clipped.toml"
    cfg.write_text(tomli_w.dumps(merge(TINY, {
        "train": {"max_steps": 12, "grad_clip": 0.05, "checkpoint_every": 0},
        "model": {"tie_embeddings": False},
        "eval": {"every": 6, "batches": 1, "sample_tokens": 8, "final_max_batches": 2},
        "log": {"every": 3, "wandb": False, "weight_norms": True, "update_ratios": True, "logit_stats": True,
                "tensorboard": True}})))
    rd = create_run(cfg, runs_dir=root / "runs")
    train(rd)
    return rd


def step_events(rd):
    return [e for e in events.read_events(rd.events) if e.kind == events.STEP]


def test_pre_clip_module_norms_combine_to_the_global_norm(clipped_run):
    steps = step_events(clipped_run)
    assert len(steps) == 4
    for ev in steps:
        m = ev.metrics
        modules = {k: v for k, v in m.items() if k.startswith(metrics.GRAD_NORM_PREFIX)}
        assert {"debug/grad_norm/embeddings", "debug/grad_norm/blocks", "debug/grad_norm/lm_head"} <= set(modules)
        combined = math.sqrt(sum(v * v for v in modules.values()))
        assert combined == pytest.approx(m[metrics.GRAD_NORM], rel=1e-4)
        assert combined > 0.05 * 1.5  # well above the clip: an after-clip measurement would give 0.05
        # what clipping did: the factor is clip / norm, and every step of the interval was clipped
        assert m[metrics.CLIP_FACTOR] == pytest.approx(0.05 / m[metrics.GRAD_NORM], rel=1e-4)
        assert m[metrics.CLIPPED] == 1.0


def test_hidden_norms_before_and_after_the_final_norm_and_the_optional_figures(clipped_run):
    m = step_events(clipped_run)[-1].metrics
    # after a LayerNorm with unit gain, a token's vector has norm ~ sqrt(d) = 5.66; before it, not
    assert m[metrics.HIDDEN_NORM_NORMED] == pytest.approx(math.sqrt(32), rel=0.1)
    assert m[metrics.HIDDEN_NORM] != pytest.approx(m[metrics.HIDDEN_NORM_NORMED], rel=0.05)
    for module in ("embeddings", "blocks", "lm_head"):
        assert m[metrics.weight_norm(module)] > 0
        assert 0 < m[metrics.update_ratio(module)] < 1
    assert m[metrics.LOGIT_MAX] > 0 and m[metrics.LOGIT_NORM] > 0
    for name in m:  # every logged name has an entry in the vocabulary (its own or its family's)
        assert metrics.registered(name), name


def test_a_run_without_clipping_logs_no_clip_figures_and_the_switches_are_off_by_default(write_config, runs_dir):
    rd = create_run(write_config("plain", {"train": {"max_steps": 5, "grad_clip": 0.0, "checkpoint_every": 0},
                                           "eval": {"every": 0, "final": False}}), runs_dir=runs_dir)
    train(rd)
    m = step_events(rd)[-1].metrics
    assert metrics.CLIP_FACTOR not in m and metrics.CLIPPED not in m
    assert not any("/weight_norm/" in k or "/update_ratio/" in k for k in m)
    assert metrics.LOGIT_MAX not in m
    assert not (rd.path / "tensorboard").exists()


def test_tensorboard_reads_the_runs_scalars_and_samples(clipped_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(clipped_run.path / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    logged = {e.step: e.metrics[metrics.TRAIN_LOSS] for e in step_events(clipped_run)}
    points = {s.step: s.value for s in acc.Scalars(metrics.TRAIN_LOSS)}
    assert points.keys() == logged.keys()
    assert all(points[k] == pytest.approx(logged[k], rel=1e-6) for k in logged)
    assert metrics.VAL_LOSS in tags["scalars"] and metrics.FINAL_LOSS in tags["scalars"]
    assert "debug/grad_norm/blocks" in tags["scalars"]
    # samples arrive as text (a tensor summary under the text plugin)
    assert any(t.startswith("samples") for t in tags["tensors"])


def test_cockpit_metrics_table_and_files_hold_every_logged_point(clipped_run, tmp_path):
    import csv

    import pyarrow.parquet as pq
    from conftest import cockpit

    runs = str(clipped_run.path.parent)
    r = cockpit("--runs-dir", runs, "metrics", clipped_run.id, "--series", "train/loss",
                "--series", "debug/grad_norm/*", "--at", "7")
    assert r.returncode == 0, r.stderr
    losses = {e.step: e.metrics["train/loss"] for e in step_events(clipped_run)}
    row = next(line.split() for line in r.stdout.splitlines() if line.startswith("train/loss"))
    # series, points, first, last, min, at step, max, at step, at 7 (the last logged at or before it)
    assert row[1] == "4" and float(row[2]) == pytest.approx(losses[3], abs=1e-4)
    assert float(row[3]) == pytest.approx(losses[12], abs=1e-4)
    assert float(row[4]) == pytest.approx(min(losses.values()), abs=1e-4)
    assert float(row[8]) == pytest.approx(losses[6], abs=1e-4) and row[9:] == ["(step", "6)"]
    assert "debug/grad_norm/blocks" in r.stdout and "debug/hidden_norm" not in r.stdout

    out = tmp_path / "series.csv"
    r = cockpit("--runs-dir", runs, "metrics", clipped_run.id, "--csv", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    by_step = {int(x["step"]): x for x in rows}
    assert {s: float(by_step[s]["train/loss"]) for s in losses} == pytest.approx(losses)
    assert by_step[12]["final_benchmarks/loss"] and not by_step[3]["final_benchmarks/loss"]
    walls = [float(by_step[s]["wall_s"]) for s in sorted(by_step)]
    assert walls == sorted(walls) and walls[0] >= 0

    pq_out = tmp_path / "series.parquet"
    assert cockpit("--runs-dir", runs, "metrics", clipped_run.id, "--series", "train/*", "--parquet",
                   str(pq_out)).returncode == 0
    table = pq.read_table(pq_out).to_pydict()
    assert dict(zip(table["step"], table["train/loss"])) == pytest.approx(losses)

    bad = cockpit("--runs-dir", runs, "metrics", clipped_run.id, "--series", "train/nosuch")
    assert bad.returncode == 2 and "train/nosuch" in bad.stderr and "train/loss" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    gone = cockpit("--runs-dir", runs, "metrics", clipped_run.id, "--csv", str(tmp_path / "no" / "x.csv"))
    assert gone.returncode == 2 and "does not exist" in gone.stderr
