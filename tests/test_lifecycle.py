"""The lifecycle table is the only way a run's state changes; the docs' diagram is made from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from runspec.run import lifecycle
from runspec.run.rundir import RunDir, StateConflict

ROOT = Path(__file__).resolve().parent.parent


def new_run(tmp_path) -> RunDir:
    rd = RunDir(tmp_path / "r")
    rd.path.mkdir()
    rd.create_state()
    return rd


def test_every_state_is_reachable_and_every_move_ends_in_a_state():
    targets = {m.target for m in lifecycle.TRANSITIONS.values()}
    assert targets == set(lifecycle.STATES)
    assert all(s in lifecycle.STATES for m in lifecycle.TRANSITIONS.values() for s in m.sources)
    assert set(lifecycle.ENDS) == set(lifecycle.FINISHED)


def test_a_run_goes_through_its_life_by_verbs(tmp_path):
    rd = new_run(tmp_path)
    rd.transition("claim", expected="queued")
    rd.transition("interrupt", reason="killed")
    rd.transition("requeue")
    rd.transition("claim")
    rd.transition("complete")
    assert [h["status"] for h in rd.read_state().history] == ["queued", "running", "interrupted", "queued",
                                                             "running", "completed"]


def test_a_move_the_table_does_not_allow_is_refused_and_changes_nothing(tmp_path):
    rd = new_run(tmp_path)
    with pytest.raises(StateConflict, match="is queued, not running"):
        rd.transition("complete")
    with pytest.raises(lifecycle.IllegalMove, match="'requeue' cannot start from queued"):
        rd.transition("requeue", expected="queued")  # asking for a state outside the table
    with pytest.raises(lifecycle.IllegalMove, match="no lifecycle move 'finish'"):
        rd.transition("finish")
    with pytest.raises(lifecycle.IllegalMove, match="'retry' cannot start from queued"):
        rd.modify(lambda s: s.move("retry"))
    assert rd.read_state().status == "queued" and len(rd.read_state().history) == 1


def test_the_docs_diagram_is_the_table():
    assert (ROOT / "docs" / "reference" / "lifecycle.md").read_text(encoding="utf-8") == lifecycle.markdown(), \
        "regenerate it: python tools/gen_reference.py"
