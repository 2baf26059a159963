"""SVG snapshots pin each tab's layout at 80x24 and at 160x48. The run directories are
written here with fixed numbers and times (a real run's tokens/s and timestamps differ on
every machine); the flows on real engine runs are in test_tui.py.

Update after an intended change of layout: pytest tests/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import json
import math
import time

import pytest

from cockpit.corpora.count import count_file
from cockpit.queue import Queue
from cockpit.tui.app import CockpitApp
from runspec.run.rundir import RunDir

pytestmark = pytest.mark.slow
SIZES = {"small": (80, 24), "large": (160, 48)}
T0 = 1_790_000_000.0


def fake_run(root, run_id: str, status: str, steps: int, max_steps: int, lr: float, reason: str = "",
             checkpoint: bool = True) -> None:
    rd = RunDir(root / run_id)
    rd.path.mkdir(parents=True)
    (rd.path / "resolved.toml").write_text('[model]\nn_layer = 4\nd_model = 128\nn_head = 4\n'
                                           f'[train]\nmax_steps = {max_steps}\n')
    history = [{"status": "queued", "time": T0}]
    if steps:
        history.append({"status": "running", "time": T0 + 10})
    if status not in ("queued", "running"):
        history.append({"status": status, "time": T0 + 20 + steps, **({"reason": reason} if reason else {})})
    rd.state_file.write_text(json.dumps({"status": status, "reason": reason, "pid": None, "step": steps,
                                         "max_steps": max_steps, "exit_code": None, "history": history}))
    if not steps:
        return
    lines = [{"kind": "start", "time": T0, "step": 0, "max_steps": max_steps, "params": 1_234_567,
              "model": "4L d128 4h", "device": "cuda:0"}]
    for step in range(10, steps + 1, 10):
        loss = 2.0 + 4.0 * math.exp(-step / (150 * lr * 1000))
        metrics = {"train/loss": loss, "train/lr": lr * min(1, step / 50), "train/tokens_per_s": 50_000 + step,
                   "train/step_ms": 20.0, "train/grad_norm": 1 / math.sqrt(step), "train/mfu": 0.31,
                   "debug/grad_norm/embeddings": 0.2 / math.sqrt(step), "debug/grad_norm/blocks": 0.8 / math.sqrt(step)}
        lines.append({"kind": "step", "time": T0 + step, "step": step, "max_steps": max_steps, "metrics": metrics})
        if step % 50 == 0:
            lines.append({"kind": "eval", "time": T0 + step, "step": step,
                          "metrics": {"train_benchmarks/loss": loss + 0.1, "train_benchmarks/bpb": (loss + 0.1) / 0.69}})
    lines.append({"kind": "sample", "time": T0 + steps, "step": steps,
                  "text": "Once upon a time there was a little robot who liked to count tokens."})
    if status == "completed":
        lines.append({"kind": "final", "time": T0 + steps, "step": steps,
                      "metrics": {"final_benchmarks/loss": 2.31, "final_benchmarks/bpb": 3.33}})
    rd.events.write_text("".join(json.dumps(x) + "\n" for x in lines))
    if checkpoint:
        rd.checkpoints.mkdir()
        (rd.checkpoints / f"step_{steps:07d}.pt").write_bytes(b"")


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """runs/ with a completed, a failed and a queued run; corpora/ with two small corpora.
    Paths are relative (the test runs inside), so they read the same on every machine."""
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    fake_run(runs, "baseline-20261101-120000", "completed", 400, 400, lr=3e-3)
    fake_run(runs, "swiglu-20261101-130000", "failed", 200, 400, lr=1e-3,
             reason="loss became nan at step 200 (try a lower lr)")
    fake_run(runs, "rope-20261101-140000", "queued", 0, 400, lr=1e-3)
    Queue(runs).push_front(["rope-20261101-140000"])
    # the worker's GPU figures, fresh, so the picture does not depend on this machine's GPUs
    (runs / ".cockpit" / "gpus.json").write_text(json.dumps({
        "available": True, "error": None, "time": time.time() + 3600,
        "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "util": 97.0, "mem_used_mb": 41230.0,
                  "mem_total_mb": 81559.0, "temp_c": 71.0, "power_w": 612.0}]}))
    corpora = tmp_path / "corpora"
    (corpora / "stories").mkdir(parents=True)
    (corpora / "stories" / "part-0.jsonl").write_text(
        "".join(json.dumps({"text": f"story {i}: the cat sat on the mat."}) + "\n" for i in range(500)))
    (corpora / "notes.txt").write_text("a few notes\n" * 100)
    # counted beforehand: the picture should not depend on when a background count finishes
    # (test_tui.py drives the count itself)
    for f in (corpora / "stories" / "part-0.jsonl", corpora / "notes.txt"):
        count_file(f, "bytes")
    return tmp_path


def app_for(tab: str, **kwargs) -> CockpitApp:
    return CockpitApp("runs", "corpora", tab=tab, tokenizer="bytes", **kwargs)


async def settle(pilot) -> None:
    """Wait until the tab has loaded (and counted), every chart shows its latest picture and
    nothing is left running: conditions, not fixed pauses, so a loaded machine only takes longer."""
    from cockpit.tui.training_pane import Chart

    app = pilot.app
    pane = app.pane(app.active_tab)

    def quiet() -> bool:
        busy = getattr(pane, "counting", False) or getattr(pane, "charts_behind", False) or \
            any(w.is_running for w in app.workers)
        return pane.polls >= 2 and not busy and not any(c.pending for c in app.query(Chart))

    async def until_quiet() -> None:
        deadline = time.monotonic() + 180
        while not quiet():
            assert time.monotonic() < deadline, "the app did not settle"
            await pilot.pause(0.05)

    await until_quiet()
    # a blinking cursor would make the picture depend on timing: the prompt gives its focus to
    # the run picker (the tab's keys still show), the inputs stop blinking
    if app.active_tab == "completion":
        app.query_one("#comp-run").focus()
    for field in app.query("Input"):
        field.cursor_blink = False
    await pilot.pause(0.1)
    await until_quiet()  # a resize or the focus change may have asked for new pictures
    app.clear_notifications()  # toasts come and go with time
    await pilot.pause(0.1)
    await until_quiet()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("tab", ["corpora", "queue", "training", "completion"])
def test_tab_layout(workspace, snap_compare, tab, size):
    kwargs = {"run": "baseline-20261101-120000"} if tab == "training" else {}
    assert snap_compare(app_for(tab, **kwargs), terminal_size=SIZES[size], run_before=settle)


def test_training_overlay_layout(workspace, snap_compare):
    async def overlay(pilot):
        pane = pilot.app.pane("training")
        pane.overlay = ["swiglu-20261101-130000"]
        pane.show_run("baseline-20261101-120000")
        deadline = time.monotonic() + 180
        while not (pane.data and "swiglu-20261101-130000" in pane.data.overlays):  # a poll with the overlay
            assert time.monotonic() < deadline, "the overlay never loaded"
            await pilot.pause(0.05)
        await settle(pilot)

    assert snap_compare(app_for("training"), terminal_size=SIZES["large"], run_before=overlay)


def test_help_layout(workspace, snap_compare):
    assert snap_compare(app_for("queue"), terminal_size=SIZES["small"], press=["question_mark"], run_before=settle)


def test_compare_layout(workspace, snap_compare):
    """The Compare tab at 80x24 with two runs picked: the table, its colour key and the overlay."""
    async def picked(pilot):
        pane = pilot.app.pane("compare")
        deadline = time.monotonic() + 180
        while len(pane._listed) < 2:
            assert time.monotonic() < deadline, "the runs were never listed"
            await pilot.pause(0.05)
        pane.pick(["baseline-20261101-120000", "swiglu-20261101-130000"])
        while len(pane._summaries) < 2:
            assert time.monotonic() < deadline, "the comparison never loaded"
            await pilot.pause(0.05)
        await settle(pilot)

    assert snap_compare(app_for("compare"), terminal_size=SIZES["small"], run_before=picked)


def test_training_live_layout(workspace, snap_compare, monkeypatch):
    """A run still training, at 80x24: one large chart, ETA, elapsed time and the last event's
    age (the clock is fixed: the age would otherwise change with every run of the test)."""
    from cockpit.tui import training_pane

    fake_run(workspace / "runs", "live-20261101-150000", "running", 250, 400, lr=2e-3)
    monkeypatch.setattr(training_pane, "clock", lambda: T0 + 250 + 12)
    assert snap_compare(app_for("training", run="live-20261101-150000"), terminal_size=SIZES["small"],
                        run_before=settle)
