"""The event protocol: whole lines only, unknown kinds and fields tolerated."""

import json

from runspec.run import events


def test_round_trip_and_non_finite_numbers(tmp_path):
    w = events.EventWriter(tmp_path / "e.jsonl")
    w.emit(events.STEP, step=3, metrics={"train/loss": float("nan"), "train/lr": 1e-3})
    w.close()
    (ev,) = events.read_events(tmp_path / "e.jsonl")
    assert ev.kind == "step" and ev.step == 3 and ev.metrics["train/lr"] == 1e-3
    assert ev.metrics["train/loss"] == "nan" and ev.time > 0


def test_truncated_last_line_is_skipped_then_read_when_complete(tmp_path):
    path = tmp_path / "e.jsonl"
    full = events.encode(events.STEP, step=1, metrics={"train/loss": 2.0})
    path.write_text(full + "\n" + full[:15])
    reader = events.EventReader(path)
    assert [e.step for e in reader.read_new()] == [1]
    with open(path, "a") as f:
        f.write(full[15:] + "\n")
    assert [e.step for e in reader.read_new()] == [1]
    assert reader.read_new() == []


def test_unknown_kinds_and_fields_are_kept_not_errors(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps({"kind": "future_thing", "time": 1, "extra": [1]}) + "\n"
                    + "not json at all\n" + json.dumps([1, 2]) + "\n")
    evs = events.read_events(path)
    assert len(evs) == 1 and evs[0].kind == "future_thing" and evs[0].get("extra") == [1]


def test_missing_file_reads_as_empty(tmp_path):
    assert events.read_events(tmp_path / "absent.jsonl") == []
