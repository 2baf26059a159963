"""RunSummary: one run at a glance with one set of fallbacks (state.json, events, config), which
status, the Queue tab, sweep status, compare and the scaling points all show."""

from __future__ import annotations

import json

import pytest

from cockpit.runs import listed
from cockpit.summary import summarize
from runspec.run.metrics import FINAL_LOSS, STEP_MS, TOKENS_PER_S, TRAIN_LOSS, VAL_LOSS
from runspec.run.rundir import RunDir

T0 = 1_800_000_000.0


def make_run(root, name: str, status: str, state_step: int, state_max: int, config_max: int, lines: list[dict]):
    rd = RunDir(root / name)
    rd.path.mkdir(parents=True)
    (rd.path / "resolved.toml").write_text(f"[model]\nn_layer = 2\nd_model = 32\nn_head = 2\n[train]\nmax_steps = {config_max}\n")
    rd.state_file.write_text(json.dumps({"status": status, "reason": "", "pid": None, "step": state_step,
                                         "max_steps": state_max, "history": [{"status": status, "time": T0}]}))
    if lines:
        rd.events.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return rd


def steps(*at: int, step_ms: float = 50.0) -> list[dict]:
    start = {"kind": "start", "time": T0, "step": 0, "max_steps": 100, "params": 5000, "tokens_per_step": 64}
    out = [start]
    for s in at:
        out.append({"kind": "step", "time": T0 + s, "step": s, "max_steps": 100,
                    "metrics": {TRAIN_LOSS: 3.0 - s / 100, STEP_MS: step_ms, TOKENS_PER_S: 1000.0 + s}})
    return out


def test_a_queued_run_takes_its_total_from_the_config(tmp_path):
    s = summarize(listed(make_run(tmp_path, "q", "queued", 0, 0, 80, [])))
    assert (s.status, s.step, s.max_steps, s.loss, s.val_loss, s.eta_s, s.model) == ("queued", 0, 80, None, None,
                                                                                      None, "2L×32")


def test_a_running_run_reads_its_events_ahead_of_its_state(tmp_path):
    lines = steps(10, 20) + [{"kind": "eval", "time": T0 + 20, "step": 20, "metrics": {VAL_LOSS: 2.5}}]
    s = summarize(listed(make_run(tmp_path, "r", "running", 10, 0, 80, lines)))
    assert (s.step, s.max_steps, s.loss, s.val_loss, s.final, s.final_loss) == (20, 100, 2.8, 2.5, False, None)
    assert s.eta_s == pytest.approx(80 * 0.050) and s.tokens == 20 * 64 and s.params == 5000
    assert s.tok_s == 1020.0 and s.median_tok_s == pytest.approx(1015.0) and s.wall_s == pytest.approx(20.0)


def test_a_grown_run_shows_the_size_it_has_now(tmp_path):
    """Before: '2L×32 / 5.0K' after it became 4×64, and 'stage 1/1' for a two-phase run."""
    rd = make_run(tmp_path, "g", "running", 10, 0, 80, steps(10, 20) + [
        {"kind": "stage", "time": T0 + 15, "step": 15, "stage": 1, "stages": 1, "params": 41000,
         "params_trainable": 41000}] + steps(30)[1:])
    with open(rd.path / "resolved.toml", "a") as f:
        f.write("[[stage]]\nat_step = 15\n[stage.grow]\nn_layer = 4\nd_model = 64\nramp_steps = 5\n")
    s = summarize(listed(rd))
    assert (s.model, s.params, s.phase) == ("4L×64", 41000, "2/2")


def test_a_completed_run_shows_its_final_pass_and_no_eta(tmp_path):
    lines = steps(10, 100) + [{"kind": "eval", "time": T0 + 100, "step": 100, "metrics": {VAL_LOSS: 2.5}},
                              {"kind": "final", "time": T0 + 101, "step": 100, "metrics": {FINAL_LOSS: 2.31}}]
    s = summarize(listed(make_run(tmp_path, "c", "completed", 100, 100, 100, lines)))
    assert (s.val_loss, s.final, s.final_loss, s.eta_s) == (2.31, True, 2.31, None)


def test_a_damaged_state_file_is_broken_but_the_numbers_still_show(tmp_path):
    rd = make_run(tmp_path, "b", "completed", 100, 100, 100, steps(10, 30))
    rd.state_file.write_text("{not json")
    s = summarize(listed(rd))
    assert s.status == "broken" and s.step == 30 and s.max_steps == 100 and s.eta_s is None


def test_the_queue_drains_at_the_rate_runs_of_the_same_shape_trained_here(tmp_path):
    from cockpit.eta import drain
    from cockpit.runs import read_states

    make_run(tmp_path, "done", "completed", 100, 100, 100, steps(10, 20, 30))  # 2L×32 at a median 1020 tok/s
    make_run(tmp_path, "live", "running", 20, 100, 100, steps(10, 20))  # 80 steps left at 50 ms: 4 s; 1015 tok/s
    make_run(tmp_path, "next", "queued", 0, 0, 51, [])  # 51 steps x 20 tokens (tokens_per_step of its config)
    listed = read_states(tmp_path)
    cfg_tokens = 51 * listed["next"].rd.read_config().tokens_per_step
    d = drain(listed, ["next"])
    assert d.runs == 2 and d.unknown == 0
    assert d.seconds == pytest.approx(80 * 0.050 + cfg_tokens / 1017.5)  # the shape's runs: median of 1020, 1015
    assert d.line(clock=False) == f"drains in {__import__('cockpit.format', fromlist=['hms']).hms(d.seconds)}"
    (tmp_path / "next" / "resolved.toml").write_text("[model]\nn_layer = 3\nd_model = 32\nn_head = 2\n")
    d = drain(read_states(tmp_path), ["next"])  # a shape never trained here: counted, not guessed
    assert d.unknown == 1 and d.line(clock=False).endswith("1 run(s) with no rate yet")
