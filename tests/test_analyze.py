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
    # two FLOP budgets x three widths: FLOP-matched groups, so IsoFLOP curves as well
    (tmp / "tiny.toml").write_text('[sweep]\nname = "tiny"\nbase = "base.toml"\n[sweep.axes]\n'
                                   '"model.d_model" = [16, 32, 64]\nflops = [3e8, 9e8]\n')
    (tmp / "lrs.toml").write_text('[sweep]\nname = "lrs"\nbase = "base.toml"\n[sweep.set]\n"train.max_steps" = 12\n'
                                  '[sweep.axes]\n"model.d_model" = [16, 32]\n"optim.lr" = [1e-3, 3e-3, 1e-2]\n')
    runs = tmp / "runs"
    for spec in ("tiny.toml", "lrs.toml"):
        r = cockpit("--runs-dir", str(runs), "sweep", str(tmp / spec))
        assert r.returncode == 0, r.stderr
    # two slots: two runs at once on a core each, so the twelve engines start side by side
    subprocess.run([sys.executable, "-m", "cockpit", "--runs-dir", str(runs), "worker", "--once", "--slots", "2"],
                   check=True, capture_output=True, timeout=PATIENCE)
    return tmp, runs


@pytest.mark.slow
def test_sweep_status_shows_finished_runs_with_their_loss(swept):
    tmp, runs = swept
    st = cockpit("--runs-dir", str(runs), "sweep", "status", "tiny")
    assert st.returncode == 0 and "6/6 completed" in st.stdout
    assert len(re.findall(r"val +\d\.\d{4}", st.stdout)) == 6


@pytest.mark.slow
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
    # the two budgets form IsoFLOP curves of three sizes each (Approach 2), drawn in the terminal too
    assert "IsoFLOP curves (Approach 2): 2 compute budgets" in r.stdout, r.stdout
    assert len(re.findall(r"^  C = \S+: 3 runs", r.stdout, re.M)) == 2
    assert "IsoFLOP curves: loss against N at fixed compute" in r.stdout and "training FLOPs (log)" in r.stdout
    assert (out / "scaling_isoflop.png").stat().st_size > 10_000
    r = cockpit("--runs-dir", str(runs), "analyze", "scaling", "--sweep", "tiny", "--hours", "0.01",
                "--params", "total", "--bootstrap", "5")
    assert r.returncode == 0 and "0.01 h at the runs' median" in r.stdout and "N = total parameters" in r.stdout


@pytest.mark.slow
def test_analyze_refuses_too_few_runs_in_one_line(swept):
    tmp, runs = swept
    ids = sorted(p.name for p in runs.iterdir() if p.name.startswith("tiny-"))
    r = cockpit("--runs-dir", str(runs), "analyze", "scaling", *ids[:3])
    assert r.returncode == 2 and "3 finished runs" in r.stderr and "at least 5" in r.stderr
    r = cockpit("--runs-dir", str(runs), "analyze", "scaling", "--sweep", "nope")
    assert r.returncode == 2 and "cockpit sweep ls" in r.stderr


@pytest.mark.slow
def test_analyze_lr_finds_a_rate_per_size_or_says_why_not(swept):
    tmp, runs = swept
    r = cockpit("--runs-dir", str(runs), "analyze", "lr", "--sweep", "lrs", "--out", str(tmp / "lrpng"))
    assert r.returncode == 0, r.stderr
    rows = re.findall(r"^ +\S+ +(16|32) +3 +(\S+) +(\S+) +(\d\.\d{4})(.*)$", r.stdout, re.M)
    assert [w for w, *_ in rows] == ["16", "32"], r.stdout
    for _, best, fitted, _, why in rows:
        assert float(best) in (1e-3, 3e-3, 1e-2)
        assert fitted != "-" or why.strip().startswith("("), r.stdout  # a minimum, or the reason there is none
    assert "final validation loss against learning rate" in r.stdout
    assert "not compared like for like" not in r.stdout  # equal steps in the sweep: no caution
    assert (tmp / "lrpng" / "lr.png").stat().st_size > 10_000
    # a sweep without learning rates to compare is one line
    r = cockpit("--runs-dir", str(runs), "analyze", "lr", "--sweep", "tiny")
    assert r.returncode == 2 and "1 learning rate" in r.stderr and "optim.lr" in r.stderr


@pytest.mark.slow
def test_compare_shows_what_differs_and_overlays_curves(swept):
    tmp, runs = swept
    ids = sorted(p.name for p in runs.iterdir() if p.name.startswith("lrs-"))
    r = cockpit("--runs-dir", str(runs), "compare", ids[0], ids[1], ids[3])
    assert r.returncode == 0, r.stderr
    assert re.search(r"^optim\.lr +0\.001 +0\.003 +0\.001$", r.stdout, re.M), r.stdout
    assert re.search(r"^model\.d_model +16 +16 +32$", r.stdout, re.M)
    assert "model.n_layer" not in r.stdout and "train.batch_size" not in r.stdout  # the same in all: not shown
    for label in ("params", "tokens", "wall clock", "tokens/s", "final val loss", "final val bpb"):
        assert re.search(rf"^{re.escape(label)} +\S+ +\S+ +\S+$", r.stdout, re.M), label
    assert "train_benchmarks/loss by step" in r.stdout and "every run id ends in" in r.stdout
    md = cockpit("--runs-dir", str(runs), "compare", ids[0], ids[1], "--md", "--metric", "train/loss",
                 "--out", str(tmp / "cmp"))
    assert md.returncode == 0 and "| optim.lr | 0.001 | 0.003 |" in md.stdout
    assert (tmp / "cmp" / "compare_train_loss.png").stat().st_size > 5_000
    bad = cockpit("--runs-dir", str(runs), "compare", ids[0], ids[1], "--metric", "val/los")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "'val/los'" in bad.stderr
    assert bad.stdout == ""
    one = cockpit("--runs-dir", str(runs), "compare", ids[0], ids[0])
    assert one.returncode == 2 and "two or more different runs" in one.stderr


@pytest.mark.slow
def test_findings_keep_the_prose_regenerate_the_evidence_and_notice_gone_runs(swept):
    import shutil

    tmp, runs = swept
    ids = sorted(p.name for p in runs.iterdir() if p.name.startswith("lrs-"))
    fdir = tmp / "findings"
    base = ("--runs-dir", str(runs), "findings", "--dir", str(fdir))
    r = cockpit(*base, "new", "Higher lr wins at 16", "--runs", ids[0], ids[2])
    assert r.returncode == 0, r.stderr
    entry = next((fdir / "entries").glob("*.md"))
    prose = "At d_model 16 a *higher* rate | trains faster.\n\nSecond paragraph, kept as written.  "
    entry.write_text(entry.read_text().replace("Write the claim here, in your own words.\n", prose))
    assert cockpit(*base, "new", "The fit", "--sweep", "tiny").returncode == 0
    fit = next((fdir / "entries").glob("02-*.md"))
    fit.write_text(fit.read_text().replace('show = "scaling"', 'show = "scaling"\nbootstrap = 5\nbudget = 1e9'))
    r = cockpit(*base)
    assert r.returncode == 0 and "2 entries" in r.stdout, r.stderr
    doc = (fdir / "FINDINGS.md").read_text()
    assert prose.rstrip() in doc and doc.index("## Higher lr wins at 16") < doc.index("## The fit")
    assert "| optim.lr | 0.001 | 0.01 |" in doc and "(plots/01-higher-lr-wins-at-16.png)" in doc
    assert (fdir / "plots" / "01-higher-lr-wins-at-16.png").exists()
    assert "IsoFLOP curves (Approach 2)" in doc and "scaling_loss_vs_compute.png" in doc
    assert entry.read_text().endswith(prose)  # the entry itself is never rewritten
    # a run behind the claim is gone: the claim says so, the rest is still shown
    shutil.copytree(runs / ids[2], tmp / "kept")
    try:
        shutil.rmtree(runs / ids[2])
        assert cockpit(*base).returncode == 0
        doc = (fdir / "FINDINGS.md").read_text()
        assert f"**Runs gone:** {ids[2]}" in doc and prose.rstrip() in doc
    finally:
        shutil.copytree(tmp / "kept", runs / ids[2])
    # a broken entry: one line naming the file and key, and the last good document stays
    before = (fdir / "FINDINGS.md").read_text()
    (fdir / "entries" / "03-bad.md").write_text('+++\ntitle = "x"\nrun = ["a"]\n+++\nclaim\n')
    r = cockpit(*base)
    assert r.returncode == 2 and "03-bad.md" in r.stderr and "'run'" in r.stderr and "as it was" in r.stderr
    assert (fdir / "FINDINGS.md").read_text() == before
    r = cockpit(*base, "new", "typo", "--runs", "no-such-run")
    assert r.returncode == 2 and "no-such-run" in r.stderr
