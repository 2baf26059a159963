"""Model-based search on the queue: a spec checked key by key, trials as queued runs told back to
an Optuna study in the runs directory, ASHA pruning through the queue's stop path, and a killed
worker that loses no trial and runs none twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w
from conftest import PATIENCE, TINY, cockpit, merge

from cockpit.study import load_study_spec
from cockpit.sweep import SweepError


def write_spec(tmp_path: Path, sweep: dict, base_extra: dict | None = None, name: str = "search") -> Path:
    base = tmp_path / "base.toml"
    base.write_text(tomli_w.dumps(merge(TINY, merge({"train": {"max_steps": 12, "checkpoint_every": 0},
                                                     "eval": {"every": 0, "sample_tokens": 0}}, base_extra or {}))))
    spec = tmp_path / f"{name}.toml"
    spec.write_text(tomli_w.dumps({"sweep": {"name": name, "base": "base.toml", **sweep}}))
    return spec


SPACE = {"optim.lr": {"log_uniform": [1e-3, 3e-2]}, "optim.warmup_steps": {"int": [0, 4]}}


@pytest.mark.parametrize("sweep, says", [
    ({"method": "tpe", "trials": 4, "space": {"optim.lr": {"log_uniform": [0, 1]}}},
     "[sweep.space] optim.lr: log_uniform needs a positive low bound, not 0"),
    ({"method": "tpe", "trials": 4, "space": {"optim.lr": {"normal": [0, 1]}}},
     "[sweep.space] optim.lr: unknown distribution 'normal'"),
    ({"method": "tpe", "trials": 4, "space": {"optim.lrr": {"uniform": [0.1, 1]}}}, "[sweep.space] optim.lrr = 0.1"),
    ({"method": "tpe", "trials": 4, "space": {"optim.lr": {"uniform": [-1, 1]}}}, "[sweep.space] optim.lr = -1"),
    ({"method": "grid", "trials": 4, "space": SPACE}, "method = \"grid\" takes choice = [...]"),
    ({"method": "bayes", "trials": 4, "space": SPACE}, "method = 'bayes': use tpe, random, grid or cmaes"),
    ({"method": "tpe", "space": SPACE}, "trials = N is required"),
    ({"method": "tpe", "trials": 4, "space": SPACE, "objective": "train/loss"}, "objective = 'train/loss'"),
    ({"method": "tpe", "trials": 4, "space": SPACE, "prune": {"method": "asha", "min_steps": 0}},
     "[sweep.prune] min_steps = 0"),
    ({"method": "tpe", "trials": 4, "space": SPACE, "budget_tokens": "lots"}, "[sweep] budget_tokens = \"lots\""),
    ({"method": "tpe", "trials": 4, "space": SPACE, "budget_tokens": 100}, "one trial trains up to"),
    ({"method": "tpe", "trials": 4, "space": SPACE, "budget_tokens": True}, "[sweep] budget_tokens = true:"),
    ({"method": "tpe", "trials": 4, "space": SPACE, "budget_tokens": 2.5e6 + 0.5}, "[sweep] budget_tokens = 2500000.5"),
])
def test_a_bad_search_space_is_a_one_line_error_naming_the_key(tmp_path, sweep, says):
    with pytest.raises(SweepError) as e:
        load_study_spec(write_spec(tmp_path, sweep))
    assert says in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_the_objective_and_its_direction_come_from_the_registry(tmp_path):
    st = load_study_spec(write_spec(tmp_path, {"method": "tpe", "trials": 3, "space": SPACE}))
    assert (st.objective, st.direction) == ("final_benchmarks/loss", "minimize")
    st = load_study_spec(write_spec(tmp_path, {"method": "random", "trials": 3, "space": SPACE,
                                               "objective": "final_benchmarks/conviction_auroc_top1"}))
    assert st.direction == "maximize"


def test_a_token_budget_queues_no_trial_that_could_cross_it(tmp_path):
    from cockpit.study import create, describe, summary, trial_tokens

    sweep = {"method": "tpe", "trials": 6, "parallel": 2, "space": SPACE}
    one = trial_tokens(load_study_spec(write_spec(tmp_path, sweep)), {})
    # room for one and a half trials: the second of the two parallel slots stays empty
    st = load_study_spec(write_spec(tmp_path, {**sweep, "budget_tokens": one * 3 // 2}, name="budget"))
    runs = tmp_path / "runs"
    assert len(create(st, runs, log=lambda _: None)) == 1
    assert load_study_spec(write_spec(tmp_path, {**sweep, "budget_tokens": float(one * 2)})).budget_tokens == one * 2
    text = describe(summary(runs, "budget"))
    assert f"tokens trained: 0 of a budget of {one * 3 // 2:,} (0%)" in text, text


def worker(runs: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cockpit", "--runs-dir", str(runs), "worker", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def trial_runs(runs: Path, name: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for p in runs.glob(f"{name}-t*/run.json"):
        out.setdefault(json.loads(p.read_text())["trial"], []).append(p.parent.name)
    return out


@pytest.mark.slow
def test_a_search_runs_its_trials_on_the_queue_and_reports_the_best(tmp_path):
    runs = tmp_path / "runs"
    spec = write_spec(tmp_path, {"method": "tpe", "trials": 4, "parallel": 2, "seed": 3, "space": SPACE})
    r = cockpit("--runs-dir", str(runs), "sweep", str(spec))
    assert r.returncode == 0 and "queued the first 2 trial(s)" in r.stdout, r.stderr
    assert cockpit("--runs-dir", str(runs), "sweep", str(spec)).returncode == 2  # the name is taken: refused
    w = worker(runs, "--once")
    assert w.wait(timeout=PATIENCE) == 0, w.stdout.read()
    assert {k: len(v) for k, v in trial_runs(runs, "search").items()} == {0: 1, 1: 1, 2: 1, 3: 1}
    values = [json.loads(p.read_text())["sweep_values"] for p in runs.glob("search-t*/run.json")]
    assert len({json.dumps(v, sort_keys=True) for v in values}) == 4  # asked in different rounds: four points
    s = cockpit("--runs-dir", str(runs), "sweep", "status", "search")
    assert s.returncode == 0 and "4 of 4 trials asked (4 complete)" in s.stdout, s.stdout
    assert "best so far: trial" in s.stdout and "importance (fANOVA): optim." in s.stdout
    # the Compare tab: the search's runs picked, s shows the study
    import asyncio

    from test_tui import on_screen, wait_for

    from cockpit.tui.app import CockpitApp

    async def look() -> None:
        app = CockpitApp(runs, tmp_path / "corpora", tab="compare", tick_s=0.1)
        async with app.run_test(size=(140, 50)) as pilot:
            pane = app.pane("compare")
            await wait_for(pilot, lambda: len(pane._listed) == 4, "the trials listed")
            pane.query_one("#cmp-sweep").value = "search"
            await wait_for(pilot, lambda: len(pane._summaries) == 4, "the comparison")
            await pilot.press("s")
            await on_screen(pilot, "best so far: trial", "importance (fANOVA)")

    asyncio.run(look())


@pytest.mark.slow
def test_a_search_with_a_token_budget_ends_when_one_more_trial_could_cross_it(tmp_path):
    from cockpit.study import load_study_spec as spec_of
    from cockpit.study import trial_tokens

    runs = tmp_path / "runs"
    sweep = {"method": "random", "trials": 10, "parallel": 2, "space": SPACE}
    one = trial_tokens(spec_of(write_spec(tmp_path, sweep)), {})
    spec = write_spec(tmp_path, {**sweep, "budget_tokens": one * 3 + one // 2})  # three whole trials fit, not four
    assert cockpit("--runs-dir", str(runs), "sweep", str(spec)).returncode == 0
    w = worker(runs, "--once")
    out, _ = w.communicate(timeout=PATIENCE)
    assert w.returncode == 0, out
    assert sorted(trial_runs(runs, "search")) == [0, 1, 2], out
    assert "budget spent (" in out
    s = cockpit("--runs-dir", str(runs), "sweep", "status", "search")
    assert "3 of 10 trials asked (3 complete)" in s.stdout, s.stdout
    assert f"tokens trained: {3 * one:,} of a budget of {one * 3 + one // 2:,}" in s.stdout
    assert "budget spent, no more trials" in s.stdout


@pytest.mark.slow
def test_asha_stops_a_bad_trial_through_the_queue_with_the_reason_and_it_can_be_resumed(tmp_path):
    runs = tmp_path / "runs"
    space = {"optim.lr": {"choice": [3e-2, 1e-2, 2e-2, 1e-7]}}  # the last one does not learn
    spec = write_spec(tmp_path, {"method": "grid", "trials": 4, "parallel": 1, "space": space,
                                 "prune": {"method": "asha", "min_steps": 20, "reduction": 2}},
                      {"train": {"max_steps": 600}, "eval": {"batches": 2}, "optim": {"min_lr": 0.0}})
    assert cockpit("--runs-dir", str(runs), "sweep", str(spec)).returncode == 0
    w = worker(runs, "--once")
    assert w.wait(timeout=PATIENCE) == 0
    states = {int(json.loads((p / "run.json").read_text())["trial"]): json.loads((p / "state.json").read_text())
              for p in runs.glob("search-t*")}
    pruned = [st for st in states.values() if st["status"] == "stopped"]
    assert pruned and all(st["reason"].startswith("pruned at step ") and "trials at this rung" in st["reason"]
                          for st in pruned), states
    s = cockpit("--runs-dir", str(runs), "sweep", "status", "search")
    assert "pruned" in s.stdout
    rid = next(p.name for p in runs.glob("search-t*") if json.loads((p / "state.json").read_text())["status"] == "stopped")
    r = cockpit("--headless", "--runs-dir", str(runs), "resume", rid)
    assert r.returncode == 0 and json.loads((runs / rid / "state.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_a_killed_worker_loses_no_trial_and_runs_none_twice(tmp_path):
    runs = tmp_path / "runs"
    spec = write_spec(tmp_path, {"method": "random", "trials": 5, "parallel": 2, "space": SPACE},
                      {"train": {"max_steps": 40}})
    assert cockpit("--runs-dir", str(runs), "sweep", str(spec)).returncode == 0
    # a trial asked but never queued, as when the process dies between the ask and the queue
    from cockpit import study as S

    st = S.read_spec(runs, "search")
    S.open_study(runs, st, 40).ask(S.distributions(st))
    w = worker(runs)
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline and not any(
            json.loads((p / "state.json").read_text())["status"] == "running" for p in runs.glob("search-t*")):
        time.sleep(0.1)
    os.kill(w.pid, signal.SIGKILL)  # mid-study: a trial is training
    w.wait(timeout=PATIENCE)
    again = worker(runs, "--once")
    assert again.wait(timeout=PATIENCE) == 0, again.stdout.read()
    found = trial_runs(runs, "search")
    assert sorted(found) == [0, 1, 2, 3, 4] and all(len(v) == 1 for v in found.values()), found
    s = cockpit("--runs-dir", str(runs), "sweep", "status", "search")
    assert "5 of 5 trials asked (5 complete)" in s.stdout, s.stdout
