"""Small guarantees of what commands print: a headless run without a terminal is never silent
for long while it advances; analyses count the runs they leave out instead of listing 999."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from cockpit import headless
from cockpit.analysis.points import SHOWN_LEFT_OUT, left_out_notes
from cockpit.runs import claim, create_run, start_engine
from runspec.run.process import Proc
from runspec.run.rundir import QUEUED


def test_runs_left_out_are_counted_by_reason_past_a_handful():
    few = [f"run{i}: not finished" for i in range(SHOWN_LEFT_OUT)]
    assert left_out_notes(few) == [f"left out: {x}" for x in few]
    many = [f"run{i}: no final validation loss (queued)" for i in range(997)] + ["x: diverged", "y: diverged"]
    notes = left_out_notes(many)
    assert len(notes) == 4 and notes[:3] == [f"left out: {x}" for x in many[:3]]
    assert notes[3] == "left out: 999 runs in all: 997 no final validation loss (queued); 2 diverged"


@pytest.mark.slow
def test_without_a_terminal_a_line_comes_while_the_run_advances(write_config, runs_dir, monkeypatch):
    monkeypatch.setattr(headless, "QUIET_S", 0.0)  # every advance is "long enough" here
    cfg = write_config("quiet", {"train": {"max_steps": 30, "checkpoint_every": 0}, "log": {"every": 1},
                                 "eval": {"every": 0, "final": False}})
    rd = create_run(cfg, runs_dir=runs_dir)
    launch = claim(rd, Proc.me("cli"), expected=(QUEUED,))
    out = io.StringIO()
    code = headless.follow(rd, start_engine(rd, launch), launch, Console(file=out, force_terminal=False))
    lines = [line for line in out.getvalue().splitlines() if line.startswith("step ")]
    assert code == 0 and len(lines) >= 2  # no evaluation ran: these lines are the quiet-time ones


@pytest.mark.slow
def test_the_final_pass_says_how_many_tokens_it_scores_and_shows_progress(write_config, runs_dir):
    """Before: the whole validation split was scored with nothing shown (it outlasted the last
    25 training steps)."""
    from conftest import cockpit

    from runspec.run import events

    cfg = write_config("final", {"train": {"max_steps": 6}, "eval": {"every": 0, "final_max_batches": 0}})
    r = cockpit("--headless", "--runs-dir", str(runs_dir), "run", str(cfg), "--name", "f")
    assert r.returncode == 0, r.stderr
    rd = next(runs_dir.glob("f-*"))
    progress = [e for e in events.read_events(rd / "events.jsonl") if e.kind == events.PROGRESS]
    assert progress and progress[0].get("what") == "final" and progress[0].get("done") == 0
    tokens = progress[0].get("tokens")
    assert f"final pass 0% of {tokens:,} tokens" in r.stdout  # a pipe: the line when the pass begins
    assert f"final: scoring {tokens:,} validation tokens" in (rd / "engine.log").read_text()
