"""`cockpit analyze scaling` over a real sweep: tiny runs queued by `cockpit sweep`, trained by a
real worker, fitted, with the cautions a sweep this small deserves and PNG plots."""

import re
import subprocess
import sys

import pytest
import tomli_w

from conftest import PATIENCE, TINY, cockpit, merge


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("analyze")
    base = merge(TINY, {"train": {"checkpoint_every": 1000}, "eval": {"every": 0, "sample_tokens": 0}})
    (tmp / "base.toml").write_text(tomli_w.dumps(base))
    (tmp / "tiny.toml").write_text('[sweep]\nname = "tiny"\nbase = "base.toml"\n[sweep.axes]\n'
                                   '"model.d_model" = [16, 32, 64]\n"train.max_steps" = [6, 12]\n')
    runs = tmp / "runs"
    r = cockpit("--runs-dir", str(runs), "sweep", str(tmp / "tiny.toml"))
    assert r.returncode == 0, r.stderr
    subprocess.run([sys.executable, "-m", "cockpit", "--runs-dir", str(runs), "worker", "--once"], check=True,
                   capture_output=True, timeout=PATIENCE)
    return tmp, runs


def test_sweep_status_shows_finished_runs_with_their_loss(swept):
    tmp, runs = swept
    st = cockpit("--runs-dir", str(runs), "sweep", "status", "tiny")
    assert st.returncode == 0 and "6/6 completed" in st.stdout
    assert len(re.findall(r"val +\d\.\d{4}", st.stdout)) == 6


def test_analyze_scaling_fits_reports_a_budget_and_cautions(swept):
    tmp, runs = swept
    out = tmp / "png"
    r = cockpit("--runs-dir", str(runs), "analyze", "scaling", "--sweep", "tiny", "--budget", "1e12",
                "--bootstrap", "10", "--out", str(out))
    assert r.returncode == 0, r.stderr
    for name in ("E", "A", "B", "alpha", "beta"):
        assert re.search(rf"^  {name} +=\s+\S+ +\[\S+, \S+\]$", r.stdout, re.M), r.stdout
    assert "N = non-embedding parameters" in r.stdout and "compute-optimal for 1e+12 FLOPs" in r.stdout
    assert "caution: some size has only 2 token budgets" in r.stdout  # 2 step counts: honest about it
    assert (out / "scaling_loss_vs_compute.png").stat().st_size > 10_000
    assert (out / "scaling_frontier.png").exists()
    r = cockpit("--runs-dir", str(runs), "analyze", "scaling", "--sweep", "tiny", "--hours", "0.01",
                "--params", "total", "--bootstrap", "5")
    assert r.returncode == 0 and "0.01 h at the runs' median" in r.stdout and "N = total parameters" in r.stdout


def test_analyze_refuses_too_few_runs_in_one_line(swept):
    tmp, runs = swept
    ids = sorted(p.name for p in runs.iterdir() if p.name.startswith("tiny-"))
    r = cockpit("--runs-dir", str(runs), "analyze", "scaling", *ids[:3])
    assert r.returncode == 2 and "3 finished runs" in r.stderr and "at least 5" in r.stderr
    r = cockpit("--runs-dir", str(runs), "analyze", "scaling", "--sweep", "nope")
    assert r.returncode == 2 and "cockpit sweep ls" in r.stderr
