"""Seeds as an axis, unit by unit (fast tier, no processes): parsing, seed groups, mean ± std,
the Δ test against scipy's own, Δs at equal steps, tokens and training time, the series read
from a real events file, ablation arms, sweep specs with seeds, and the registry's final figures."""

import math
from pathlib import Path

import pytest
from scipy import stats

from cockpit import seeds
from cockpit.ablate import AblationError, arms, parse_vary
from cockpit.analysis import spread
from cockpit.analysis.compare import Summary, ValCurve, columns, ema, table, val_curve
from cockpit.analysis.series import read_series
from runspec.run import events
from runspec.run.metrics import FINAL_LOSS, STEP_MS, TOKENS, VAL_LOSS, final_figures, label_of
from runspec.run.rundir import RunDir


def test_seeds_parse_as_a_count_or_a_list_and_refuse_nonsense():
    assert seeds.parse_seeds("3").values(1337) == [1337, 1338, 1339]
    assert seeds.parse_seeds("5,1,2").values(1337) == [5, 1, 2]
    for bad in ("0", "x", "1,1", "-1,2", "", "5000"):
        with pytest.raises(Exception) as e:
            seeds.parse_seeds(bad)
        assert "seed" in str(e.value)
    assert seeds.Seeds.from_spec([3, 4], "[sweep] seeds").values(0) == [3, 4]
    with pytest.raises(ValueError, match=r"\[sweep\] seeds = 'two'"):
        seeds.Seeds.from_spec("two", "[sweep] seeds")
    assert seeds.seed_name("abl-base", 7) == "abl-base-s7"
    assert seeds.group_label(["abl-base-s1", "abl-base-s2"]) == "abl-base"


def summary(run, seed, loss_at_end, tok_s=1000.0, kind="mha", steps=(100, 200), status="completed"):
    """A run's comparison summary as compare builds it (the dataclass itself, filled by hand)."""
    config = {"train.seed": seed, "model.attention.kind": kind, "train.max_steps": steps[-1]}
    loss = [loss_at_end + 0.5, loss_at_end]
    val = ValCurve([float(s) for s in steps], [s * 1000.0 for s in steps], [s / 10 for s in steps], loss)
    return Summary(run, status, config, 1000, 900, steps[-1] * 1000, 20.0, tok_s, {FINAL_LOSS: loss_at_end},
                   {VAL_LOSS: ([float(s) for s in steps], loss)}, None, val)


def test_runs_that_differ_only_in_seed_are_one_column_with_mean_and_std():
    runs = [summary("a-s1-20261202-000000", 1, 2.0), summary("a-s2-20261202-000000", 2, 2.2),
            summary("b-s1-20261202-000000", 1, 1.9, kind="mla")]
    cols = columns(runs)
    assert [c.label for c in cols] == ["a ×2", "b-s1"]
    header, rows = table(runs)
    assert header == ["", "a ×2", "b-s1"]
    final = next(r for r in rows if r[0] == "final val loss")
    assert final[1] == f"2.1000 ± {math.sqrt(0.02):.4f}" and final[2] == "1.9000"
    assert next(r for r in rows if r[0] == "train.seed")[1:] == ["1,2", "1"]
    assert next(r for r in rows if r[0] == "runs (seeds)")[1:] == ["2", "1"]
    # --separate: one column per run, as before
    header, _ = table(runs, grouped=False)
    assert header == ["", "a-s1", "a-s2", "b-s1"]


def test_the_paired_delta_is_scipys_paired_t_interval_and_welch_is_welchs():
    base = {1: 2.00, 2: 2.10, 3: 2.05}
    other = {1: 1.90, 2: 2.02, 3: 1.93}
    d = spread.delta(base, other)
    diffs = [other[k] - base[k] for k in base]
    lo, hi = stats.t.interval(0.95, len(diffs) - 1, loc=sum(diffs) / 3, scale=stats.sem(diffs))
    assert d.test == "paired" and d.diff == pytest.approx(sum(diffs) / 3)
    assert d.half_width == pytest.approx((hi - lo) / 2)
    assert d.within is (stats.ttest_rel(list(other.values()), list(base.values())).pvalue > 0.05)
    # seeds that do not match: Welch's interval, the same verdict as scipy's Welch test
    w = spread.delta({1: 2.0, 2: 2.1, 3: 2.05}, {7: 2.02, 8: 2.20})
    p = stats.ttest_ind([2.02, 2.20], [2.0, 2.1, 2.05], equal_var=False).pvalue
    assert w.test == "welch" and w.within is (p > 0.05)
    # one run on a side: a difference, no verdict
    assert spread.delta({1: 2.0}, {1: 1.5}).within is None
    assert spread.delta({1: 2.0}, {1: 1.5}).format() == "-0.5000"
    assert spread.delta(base, other).format().endswith(" *" if not d.within else " ~")


def test_baseline_rows_take_each_delta_at_the_point_every_run_reached():
    base = [summary("base-s1", 1, 2.0, tok_s=1000), summary("base-s2", 2, 2.1, tok_s=1100)]
    # the variant ran half as long: equal steps means step 100, where both curves have a point
    short = [summary("v-s1", 1, 1.5, tok_s=800, kind="mla", steps=(50, 100)),
             summary("v-s2", 2, 1.7, tok_s=900, kind="mla", steps=(50, 100))]
    header, rows = table([*short, *base], baseline="base")
    assert header == ["", "base ×2", "v ×2"]  # the baseline's column first
    by = {r[0]: r[1:] for r in rows}
    steps_row = next(k for k in by if k.startswith("Δ val loss, equal steps"))
    assert "step 100" in steps_row and by[steps_row][0] == "baseline"
    # at step 100 the baseline's curve is at its first point (loss + 0.5): 2.5 and 2.6; the variant's at its last
    d = spread.delta({1: 2.5, 2: 2.6}, {1: 1.5, 2: 1.7})
    assert by[steps_row][1] == d.format()
    tokens_row = next(k for k in by if k.startswith("Δ val loss, equal tokens"))
    assert "100k tokens" in tokens_row
    clock_row = next(k for k in by if k.startswith("Δ val loss, equal wall clock"))
    assert by[clock_row][1] == d.format()  # training time is steps / 10 in both: the same point
    assert by["Δ tokens/s"][1].startswith("-19.0%")  # 850 against 1050
    assert by["Δ params"][1] == "+0.0%"
    with pytest.raises(ValueError, match="--baseline 'nosuch'"):
        table(base, baseline="nosuch")


def test_series_and_the_training_clock_come_from_a_real_events_file(tmp_path):
    rd = RunDir(tmp_path / "r")
    rd.path.mkdir()
    w = events.EventWriter(rd.events)
    w.emit(events.START, step=0)
    for step in (10, 20):
        w.emit(events.STEP, step=step, metrics={STEP_MS: 100.0, TOKENS: step * 64})
    w.emit(events.EVAL, step=20, metrics={VAL_LOSS: 3.0})
    # a resume from step 10 repeats step 20 at another speed: the later value and time win
    w.emit(events.START, step=10)
    w.emit(events.STEP, step=20, metrics={STEP_MS: 300.0, TOKENS: 20 * 64})
    w.emit(events.STEP, step=30, metrics={STEP_MS: 100.0, TOKENS: 30 * 64})
    w.emit(events.FINAL, step=30, metrics={FINAL_LOSS: 2.5})
    w.close()
    rs = read_series(rd)
    assert rs.train_s == pytest.approx({10: 1.0, 20: 4.0, 30: 5.0})
    curve = val_curve(rs)
    assert curve.steps == [20.0, 30.0] and curve.loss == [3.0, 2.5]
    assert curve.tokens == [1280.0, 1920.0] and curve.train_s == pytest.approx([4.0, 5.0])
    assert curve.at("train_s", 4.5) == pytest.approx(2.75)
    assert curve.at("steps", 10) is None  # before the first evaluation: no value, not an extrapolation


def test_a_polling_face_reads_a_finished_run_again_only_when_its_files_change(tmp_path):
    from cockpit.analysis.compare import Summaries

    rd = RunDir(tmp_path / "r")
    rd.path.mkdir()
    rd.create_state("completed", max_steps=30)
    w = events.EventWriter(rd.events)
    w.emit(events.START, step=0)
    w.emit(events.EVAL, step=20, metrics={VAL_LOSS: 3.0})
    w.close()
    read = Summaries()
    first = read.get(rd)
    assert read.get(rd) is first and first.val.loss == [3.0]  # unchanged: the same summary, not re-read
    w = events.EventWriter(rd.events)
    w.emit(events.FINAL, step=30, metrics={FINAL_LOSS: 2.5})
    w.close()
    again = read.get(rd)
    assert again is not first and again.val.loss == [3.0, 2.5] and again.final[FINAL_LOSS] == 2.5
    rd.update(status="running")
    assert read.get(rd) is not read.get(rd)  # a live run is always read
    read.keep([])
    assert not read._memo


def test_ema_is_debiased_and_zero_leaves_the_curve():
    assert ema([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])
    assert ema([1.0, 2.0], 0.0) == [1.0, 2.0]
    assert ema([0.0, 10.0], 0.5) == pytest.approx([0.0, 10 * 0.5 / 0.75])


def test_ablation_arms_and_values():
    assert parse_vary("model.shorten=[1,3,1],[1,1,1]") == ("model.shorten", [[1, 3, 1], [1, 1, 1]])
    assert parse_vary("model.ffn.activation=gelu,silu") == ("model.ffn.activation", ["gelu", "silu"])
    for bad in ("model.x", "x=1", "train.seed=1,2"):
        with pytest.raises(AblationError):
            parse_vary(bad)
    labels = [a.label for a in arms("abl", [("optim.lr", [1e-3, 3e-3]), ("model.n_layer", [2])])]
    assert labels == ["abl-base", "abl-lr-0.001", "abl-lr-0.003", "abl-n_layer-2"]
    grid = arms("abl", [("optim.lr", [1e-3]), ("model.n_layer", [2, 4])], grid=True)
    assert [a.values for a in grid[1:]] == [{"optim.lr": 1e-3, "model.n_layer": 2}, {"optim.lr": 1e-3, "model.n_layer": 4}]


def test_a_sweep_spec_with_seeds_runs_every_point_once_per_seed(tmp_path):
    from cockpit.sweep import SweepError, load_sweep

    base = Path(__file__).resolve().parent.parent / "examples" / "quickstart.toml"
    spec = tmp_path / "s.toml"
    spec.write_text(f'[sweep]\nbase = "{base}"\nseeds = 2\n[sweep.axes]\n"optim.lr" = [1e-3, 3e-3]\n')
    sw = load_sweep(spec)
    assert [r.name for r in sw.runs] == ["s-01-s1337", "s-01-s1338", "s-02-s1337", "s-02-s1338"]
    assert [r.cfg.train.seed for r in sw.runs] == [1337, 1338, 1337, 1338]
    assert sw.runs[1].values == {"optim.lr": 1e-3, "train.seed": 1338}
    spec.write_text(f'[sweep]\nbase = "{base}"\nseeds = 2\n[sweep.axes]\n"train.seed" = [1, 2]\n')
    with pytest.raises(SweepError, match="seeds and a train.seed axis"):
        load_sweep(spec)


def test_every_final_figure_comes_from_the_registry_in_its_order():
    names = {"final_benchmarks/sliding_loss", "final_benchmarks/loss", "final_benchmarks/tokens",
             "final_benchmarks/conviction_auroc_top1", "final_benchmarks/test_sliding_bpb"}
    assert final_figures(names) == ["final_benchmarks/loss", "final_benchmarks/conviction_auroc_top1",
                                    "final_benchmarks/sliding_loss", "final_benchmarks/test_sliding_bpb"]
    assert label_of("final_benchmarks/sliding_loss") == "final sliding loss"
    assert label_of(FINAL_LOSS) == "final val loss"
