"""The TUI, driven with Textual's Pilot on real run directories trained by the engine, real
corpora, a real worker subprocess and a real completion process."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cockpit.history import RunHistory, Series
from cockpit.queue import Queue
from cockpit.tui.app import CockpitApp
from runspec.run import events
from runspec.run.rundir import RunDir
from tests.conftest import ROOT, TINY, cockpit, merge

pytestmark = pytest.mark.slow


# Waits end as soon as their condition holds; the bound only decides when to give up, and a
# loaded 2-core machine (CI, a user's laptop training beside the tests) needs a generous one.
PATIENCE = 600.0


async def wait_for(pilot, condition, what: str = "condition", timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await pilot.pause(0.1)


async def on_screen(pilot, *texts: str, timeout: float = PATIENCE) -> str:
    """Wait until every text is on the screen (a repaint may trail the data); return the screen."""
    deadline = time.monotonic() + timeout
    while True:
        screen = await shown(pilot)
        if all(t in screen for t in texts):
            return screen
        if time.monotonic() > deadline:
            missing = [t for t in texts if t not in screen]
            raise AssertionError(f"not on screen after {timeout:.0f}s: {missing}\n{screen}")


async def shown(pilot) -> str:
    """The screen as text, once pending layout and repaints are done."""
    await pilot.pause(0.2)
    update = pilot.app.screen._compositor.render_full_update()
    return "\n".join("".join(s.text for s in line) for line in update.strips)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two finished runs made by the engine: one with the conviction head, one without."""
    import tomli_w

    root = tmp_path_factory.mktemp("trained")
    runs = root / "runs"
    cfg = merge(TINY, {"train": {"max_steps": 30}, "eval": {"every": 10}, "conviction": {"enabled": True}})
    (root / "conv.toml").write_text(tomli_w.dumps(cfg))
    (root / "plain.toml").write_text(tomli_w.dumps(merge(TINY, {"train": {"max_steps": 30}})))
    for name in ("conv", "plain"):
        r = cockpit("--headless", "--runs-dir", str(runs), "run", str(root / f"{name}.toml"), "--name", name)
        assert r.returncode == 0, r.stderr
    ids = {d.name.split("-")[0]: d.name for d in runs.iterdir() if not d.name.startswith(".")}
    return runs, ids


def copy_runs(trained, tmp_path) -> Path:
    runs = tmp_path / "runs"
    shutil.copytree(trained[0], runs)
    return runs


# -- pure parts ---------------------------------------------------------------------------

def test_series_stays_bounded_and_keeps_its_shape():
    s = Series(cap=64)
    for i in range(100_000):
        s.add(i, 1000.0 - i / 100)
    xs, ys = s.points()
    assert len(xs) <= 65
    assert xs[-1] == 99_999 and ys[-1] == pytest.approx(1000 - 999.99)  # ends at the newest raw point
    assert all(a < b for a, b in zip(xs, xs[1:]))  # still ordered by step
    assert all(a > b for a, b in zip(ys, ys[1:]))  # a falling curve still falls


def test_history_reads_incrementally_and_skips_a_partial_line(tmp_path):
    rd = RunDir(tmp_path / "r")
    rd.path.mkdir()
    w = events.EventWriter(rd.events)
    w.emit(events.START, step=0, max_steps=100, params=1234, model="m")
    for step in (5, 10):
        w.emit(events.STEP, step=step, max_steps=100, metrics={"train/loss": 5.0 - step / 10, "train/lr": 1e-3})
    h = RunHistory(rd)
    assert h.poll() == 3 and h.start["params"] == 1234
    with open(rd.events, "a") as f:
        f.write('{"kind":"eval","time":1,"step":10,"metrics":{"train_benchmarks/loss":4.')  # writer mid-line
    assert h.poll() == 0
    with open(rd.events, "a") as f:
        f.write('5}}\n')
    assert h.poll() == 1
    v = h.view()
    assert v.series["train/loss"] == ([5, 10], [4.5, 4.0])
    assert v.latest["train_benchmarks/loss"] == 4.5 and v.step == 10 and v.max_steps == 100


# -- start-up -----------------------------------------------------------------------------

def test_the_tui_never_imports_torch(trained, tmp_path):
    """Every tab loaded on real runs, in a fresh interpreter: torch stays out."""
    script = f"""
import asyncio, sys
from cockpit.tui.app import CockpitApp
async def main():
    app = CockpitApp({str(trained[0])!r}, {str(tmp_path)!r}, tokenizer="bytes")
    async with app.run_test(size=(100, 30)) as pilot:
        for key in "1234":
            await pilot.press(key)
            await pilot.pause(0.5)
        assert app.pane("training").data.view is not None
    print("torch" in sys.modules)
asyncio.run(main())
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=PATIENCE, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


# -- queue --------------------------------------------------------------------------------

async def test_queue_tab_queues_a_config_and_watches_the_worker_finish_it(write_config, tmp_path):
    runs = tmp_path / "runs"
    config = write_config("q", {"train": {"max_steps": 10}, "eval": {"every": 0}})
    app = CockpitApp(runs, tmp_path / "corpora", tab="queue", tick_s=0.1)
    async with app.run_test(size=(120, 30)) as pilot:
        pane = app.pane("queue")
        # a bad path is answered inside the dialog, and nothing is created
        await pilot.press("a")
        await pilot.pause()
        app.screen.query_one("#prompt-input").value = str(tmp_path / "nope.toml")
        await pilot.press("enter")
        await pilot.pause()
        assert "does not exist" in str(app.screen.query_one("#prompt-error").render())
        # a config whose corpus is missing is refused there too (checked once, then queued as checked)
        app.screen.query_one("#prompt-input").value = str(write_config("nodata", {"data": {"path": str(tmp_path / "gone.txt")}}))
        await pilot.press("enter")
        await pilot.pause()
        assert "gone.txt" in str(app.screen.query_one("#prompt-error").render())
        app.screen.query_one("#prompt-input").value = str(config)
        await pilot.press("enter")
        await wait_for(pilot, lambda: [r.status for r in pane.rows] == ["queued"], "the queued row")
        assert pane.rows[0].position == 1 and pane.rows[0].size == "2L×32"
        await pilot.press("w")  # a real `cockpit worker --once` in its own session
        await wait_for(pilot, lambda: pane.rows and pane.rows[0].status == "completed", "the run to finish")
        assert pane.rows[0].step == 10
        await on_screen(pilot, "completed")
        await pilot.press("enter")  # watch it: the Training tab opens on this run
        await wait_for(pilot, lambda: app.active_tab == "training" and app.pane("training").data is not None
                       and app.pane("training").data.view is not None, "the training view")
        assert app.pane("training").data.view.id == pane.rows[0].id


async def test_queue_keys_move_pause_stop_retry_and_remove(write_config, tmp_path):
    runs = tmp_path / "runs"
    q = Queue(runs)
    ids = [rd.id for rd in q.add([str(write_config(n)) for n in ("a", "b", "c")])]
    app = CockpitApp(runs, tmp_path / "corpora", tab="queue", tick_s=0.1)
    async with app.run_test(size=(120, 30)) as pilot:
        pane = app.pane("queue")
        await wait_for(pilot, lambda: len(pane.rows) == 3, "three rows")
        assert pane.selected_id() == ids[0]
        await pilot.press("2")  # the number of the tab already shown keeps focus in it (it dropped it)
        await wait_for(pilot, lambda: app.focused is not None and pane in app.focused.ancestors_with_self, "focus")
        await pilot.press("J")  # move the first one down
        await wait_for(pilot, lambda: q.order == [ids[1], ids[0], ids[2]], "the move")
        await pilot.press("p")
        await wait_for(pilot, lambda: q.paused, "pause")
        await wait_for(pilot, lambda: "QUEUE PAUSED" in str(pane.query_one("#queue-status").render()), "the paused banner")
        await wait_for(pilot, lambda: pane.selected_id() == ids[0], "the cursor to follow the run")
        await pilot.press("s")  # stop a queued run: out of the queue, state stopped
        await wait_for(pilot, lambda: RunDir(runs / ids[0]).read_state().status == "stopped", "stop")
        assert ids[0] not in q.order
        await wait_for(pilot, lambda: any(r.id == ids[0] and r.status == "stopped" for r in pane.rows), "row")
        await pilot.pause(0.3)
        table = pane.query_one("#queue-table")
        table.move_cursor(row=table.get_row_index(ids[0]))
        await pilot.press("r")  # retry: queued again
        await wait_for(pilot, lambda: ids[0] in q.order, "retry")
        await wait_for(pilot, lambda: any(r.id == ids[0] and r.status == "queued" for r in pane.rows), "row")
        table.move_cursor(row=table.get_row_index(ids[2]))
        await pilot.press("x")  # remove asks first
        await pilot.press("n")
        await pilot.pause(0.3)
        assert (runs / ids[2]).exists()
        await pilot.press("x")
        await pilot.press("y")
        await wait_for(pilot, lambda: not (runs / ids[2]).exists(), "removal")
        assert ids[2] not in q.order


async def test_x_on_a_running_run_says_stop_it_first_and_deletes_nothing(tmp_path):
    runs = tmp_path / "runs"
    rd = RunDir(runs / "busy-1")
    rd.path.mkdir(parents=True)
    rd.create_state("running", max_steps=100)
    app = CockpitApp(runs, tmp_path / "corpora", tab="queue", tick_s=0.1)
    async with app.run_test(size=(120, 30)) as pilot:
        pane = app.pane("queue")
        await wait_for(pilot, lambda: len(pane.rows) == 1, "the row")
        await pilot.press("x")
        await wait_for(pilot, lambda: any("press s to stop it first" in n.message for n in app._notifications),
                       "the warning")
        assert app.screen is app.screen_stack[0] and rd.path.exists()  # no question asked, nothing deleted


async def test_queue_table_shows_results_speed_time_and_asks_before_stopping_a_long_run(trained, tmp_path):
    from cockpit.tui.queue_pane import short_ids

    runs = copy_runs(trained, tmp_path)
    conv = trained[1]["conv"]
    long = RunDir(runs / "an-evening-long-ablation-of-attention-variants-20260101-000000")
    long.path.mkdir()
    long.create_state("running", max_steps=1000)
    t0 = time.time() - 900
    long.events.write_text("".join(json.dumps(e) + "\n" for e in [
        {"kind": "start", "time": t0, "step": 0, "max_steps": 1000},
        {"kind": "step", "time": t0 + 700, "step": 400, "max_steps": 1000,
         "metrics": {"train/loss": 2.5, "train/tokens_per_s": 19_131.3, "train/step_ms": 1750.0}}]))
    app = CockpitApp(runs, tmp_path / "corpora", tab="queue", tick_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.pane("queue")
        await wait_for(pilot, lambda: len(pane.rows) == 3, "the rows")
        done = next(r for r in pane.rows if r.id == conv)
        final = RunHistory(RunDir(runs / conv))
        final.poll()
        assert done.final and done.val_loss == final.final["final_benchmarks/loss"]  # not the last train loss
        # names lose their stamps and are cut: progress and the ETA stay on an 80-column screen
        shown = short_ids([r.id for r in pane.rows])
        assert shown[long.id] == "an-evening-long-ablation-…" and shown[conv] == "conv"
        await on_screen(pilot, "an-evening-long-ablation-…", "400/1000", "ETA 0:17:30", f"{done.val_loss:.4f}")
        table = pane.query_one("#queue-table")
        assert "19.1k" in [str(c) for c in table.get_row(long.id)]  # tokens/s, further right
        # s on a run that has trained for 11 minutes asks first; no leaves it running
        table.move_cursor(row=table.get_row_index(long.id))
        await pilot.press("s")
        await wait_for(pilot, lambda: app.screen is not app.screen_stack[0], "the question")
        assert "It has trained for 0:11:40" in str(app.screen.query_one(".question").render())
        await pilot.press("n")
        await pilot.pause(0.3)
        assert long.read_state().status == "running" and not long.read_state().stop_requested


# -- training -----------------------------------------------------------------------------

async def test_training_tab_shows_a_finished_run_and_overlays_another(trained, tmp_path):
    runs = copy_runs(trained, tmp_path)
    conv, plain = trained[1]["conv"], trained[1]["plain"]
    app = CockpitApp(runs, tmp_path / "corpora", tab="training", run=conv, tick_s=0.1)
    async with app.run_test(size=(140, 40)) as pilot:
        pane = app.pane("training")
        await wait_for(pilot, lambda: pane.data and pane.data.view and pane.data.view.final, "the history")
        loss = pane.query_one("#chart-loss")
        await wait_for(pilot, lambda: "train" in loss.lines, "the loss chart")
        assert set(loss.lines) == {"train", "val", "conviction_loss"}  # the model's named losses beside the LM's
        assert loss.lines["train"][0][-1] == 30  # drawn to the last step
        grads = pane.query_one("#chart-grad").lines
        assert {"global", "conviction_head", "embeddings", "blocks"} <= set(grads)
        await on_screen(pilot, "final loss", "30/30", "conv. AUROC", "sample @ step 30")
        await pilot.press("c")
        await pilot.pause(0.2)
        app.screen.query_one("#compare-list").select(plain)
        await pilot.press("enter")
        await wait_for(pilot, lambda: f"{plain} val" in loss.lines, "the overlay")
        ours, theirs = loss.lines["val"], loss.lines[f"{plain} val"]
        assert theirs[0] == ours[0] and theirs[1] != ours[1]  # same eval steps, another run's losses
        # o: the resolved config, and how it differs from the run overlaid
        await pilot.press("o")
        await wait_for(pilot, lambda: getattr(app.screen, "loaded", False), "the config view")
        text = "\n".join(str(line) for line in app.screen.query_one("#view-log").lines)
        assert "[model]" in text and f"# differs from {plain}:" in text
        assert "conviction.enabled: True here, False there" in text
        await pilot.press("escape")
        # l: the engine's log, following what is appended
        await pilot.press("l")
        await wait_for(pilot, lambda: getattr(app.screen, "loaded", False), "the log view")
        log = app.screen.query_one("#view-log")
        assert any("step" in str(line) for line in log.lines)
        with open(runs / conv / "engine.log", "a") as f:
            f.write("a line written after the view opened\n")
        await wait_for(pilot, lambda: any("written after the view opened" in str(x) for x in log.lines), "following")
        await pilot.press("escape")
        await pilot.press("full_stop")  # next run
        await wait_for(pilot, lambda: pane.data.view.id != conv, "the next run")


async def test_training_tab_at_80x24_one_chart_ema_picker_system_and_keys(trained, tmp_path):
    runs = copy_runs(trained, tmp_path)
    conv, plain = trained[1]["conv"], trained[1]["plain"]
    (runs / "empty-20260101-000000").mkdir()  # a run directory with nothing in it is never offered
    app = CockpitApp(runs, tmp_path / "corpora", tab="training", run=conv, tick_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.pane("training")
        await wait_for(pilot, lambda: pane.data and pane.data.view and pane.data.view.final, "the history")
        charts = {name: pane.query_one(f"#chart-{name}") for name in ("loss", "lr", "grad", "tps")}
        assert pane.mode == "loss" and [n for n, c in charts.items() if c.display] == ["loss"]
        await wait_for(pilot, lambda: charts["loss"].size.height > 12, "one large chart")
        await pilot.press("v")
        assert pane.mode == "lr" and [n for n, c in charts.items() if c.display] == ["lr"]
        for _ in range(3):
            await pilot.press("v")
        assert pane.mode is None and all(c.display for c in charts.values())
        await pilot.press("v")  # and round again
        assert pane.mode == "loss"
        # e: the training loss smoothed; validation drawn as markers under it
        await pilot.press("e")
        await wait_for(pilot, lambda: "train (EMA)" in charts["loss"].lines, "the smoothed line")
        assert charts["loss"].points >= {"val"}
        # c: the picker offers neither the run shown nor a run without events, and says what is checked
        await pilot.press("c")
        await wait_for(pilot, lambda: app.screen.query("#compare-list"), "the picker")
        picker = app.screen.query_one("#compare-list")
        offered = [picker.get_option_at_index(i).value for i in range(picker.option_count)]
        assert offered == [plain]
        checked = app.screen.query_one("#compare-checked")
        assert "checked: none" in str(checked.render())
        picker.select(plain)
        await wait_for(pilot, lambda: f"checked (1): {plain}" in str(checked.render()), "the checked line")
        await pilot.press("enter")
        await wait_for(pilot, lambda: f"{plain} val" in charts["loss"].lines, "the overlay")
        # i: GPU, keep-awake and host figures in full; toasts wait while a dialog is open
        await pilot.press("i")
        await wait_for(pilot, lambda: getattr(app.screen, "loaded", False), "the details")
        text = "\n".join(str(line) for line in app.screen.query_one("#view-log").lines)
        assert "GPUs (NVML):" in text and "keep-awake:" in text and "this machine:" in text
        app.notify("held back")
        assert app._held and not any("held back" in str(n.message) for n in app._notifications)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app._held, "the held toast")
        assert any("held back" in str(n.message) for n in app._notifications)
        # alt+number switches tabs from inside the completion prompt (digits there are text)
        await pilot.press("4")
        await wait_for(pilot, lambda: app.active_tab == "completion", "the completion tab")
        app.query_one("#comp-prompt").focus()
        await pilot.press("alt+3")
        await wait_for(pilot, lambda: app.active_tab == "training", "the training tab again")
    # the overlay survives a restart; at 160x48 the tab opens on all four charts
    again = CockpitApp(runs, tmp_path / "corpora", tab="training", run=conv, tick_s=0.1)
    async with again.run_test(size=(160, 48)) as pilot:
        pane = again.pane("training")
        assert pane.overlay == [plain]
        await wait_for(pilot, lambda: pane.data and pane.data.view, "the history")
        assert pane.mode is None


async def test_training_tab_follows_a_live_run(tmp_path):
    """Events appended while the tab is open reach the numbers and the charts."""
    runs = tmp_path / "runs"
    rd = RunDir(runs / "live-1")
    rd.path.mkdir(parents=True)
    rd.create_state("running", max_steps=1000)
    w = events.EventWriter(rd.events)
    w.emit(events.START, step=0, max_steps=1000, params=1000, model="tiny", device="cpu",
           cpu={"threads": 2, "most": 2, "cores": 2, "others": 0.0, "passive": False, "source": "auto"})
    app = CockpitApp(runs, tmp_path / "corpora", tab="training", tick_s=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.pane("training")
        for step in range(1, 301):
            shared = step > 250  # two CPU-bound processes arrived: the engine dropped to one thread
            w.emit(events.STEP, step=step, max_steps=1000, metrics={
                "train/loss": 6 - step / 100, "train/step_ms": 10, "train/threads": 1 if shared else 2,
                "train/cpu_others": 2.0 if shared else 0.0,
                "debug/never_seen_before_loss": 1 / step, "debug/aux/layer1_t1_loss": 7 - step / 100})
        await wait_for(pilot, lambda: pane.data and pane.data.view and pane.data.view.step == 300, "step 300")
        await on_screen(pilot, "300/1,000", "0:00:07")  # ETA: 700 steps x 10 ms
        screen = await on_screen(pilot, "CPU shared  2.0 of 2 busy")
        assert re.search(r"threads +1 ", screen)
        loss = pane.query_one("#chart-loss")
        await wait_for(pilot, lambda: loss.lines.get("train", ([0], []))[0][-1] == 300, "the chart")
        # losses the model names are charted without the TUI knowing their names
        assert set(loss.lines) == {"train", "never_seen_before_loss", "aux/layer1_t1_loss"}
        await on_screen(pilot, "last event", "elapsed")
        assert "no event for" not in await shown(pilot)


async def test_a_running_run_whose_engine_went_quiet_is_flagged(tmp_path):
    """A run still 'running' whose last event is far older than its usual gap between steps."""
    runs = tmp_path / "runs"
    rd = RunDir(runs / "quiet-1")
    rd.path.mkdir(parents=True)
    rd.create_state("running", max_steps=1000)
    t0 = time.time() - 600  # ten minutes ago, one step a second until step 20, then nothing
    lines = [{"kind": "start", "time": t0, "step": 0, "max_steps": 1000, "params": 1000}]
    lines += [{"kind": "step", "time": t0 + s, "step": s, "max_steps": 1000,
               "metrics": {"train/loss": 3.0, "train/step_ms": 1000 if s != 20 else 9000}} for s in range(1, 21)]
    lines.append({"kind": "eval", "time": t0 + 20, "step": 20, "metrics": {"train_benchmarks/loss": 3.1}})
    rd.events.write_text("".join(json.dumps(x) + "\n" for x in lines))
    app = CockpitApp(runs, tmp_path / "corpora", tab="training", tick_s=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await on_screen(pilot, "no event for 0:09:", "engine may be stuck", "val @20")
        # ETA from the median of recent step times (1 s), not the newest slow one (9 s)
        assert "0:16:20" in screen


async def test_a_run_with_stages_shows_stage_k_of_n_and_marks_the_boundaries(tmp_path):
    """Stage events (as the engine writes them) reach the queue's progress column, the training
    numbers (with the parent run) and a vertical marker on every chart. Two [[stage]] entries at
    steps 100 and 250 make three phases: in the first stage the run is in its second."""
    runs = tmp_path / "runs"
    rd = RunDir(runs / "grow-1")
    rd.path.mkdir(parents=True)
    rd.create_state("running", max_steps=400)
    w = events.EventWriter(rd.events)
    w.emit(events.START, step=0, max_steps=400, params=1000, model="tiny", device="cpu", stages=2, stage=0,
           stage_starts=[100, 250], init_from={"ref": "/x/runs/small-7:300", "step": 300})
    for step in range(1, 201):
        if step == 100:
            w.emit(events.STAGE, step=100, stage=1, stages=2, name="grow", description="n_layer 8",
                   params=2000, params_trainable=2000)
        w.emit(events.STEP, step=step, max_steps=400, stage=1 if step > 100 else 0,
               metrics={"train/loss": 6 - step / 100, "train/step_ms": 10, "train/lr": 1e-3})
    app = CockpitApp(runs, tmp_path / "corpora", tab="training", tick_s=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.pane("training")
        await wait_for(pilot, lambda: pane.data and pane.data.view and pane.data.view.step == 200, "step 200")
        await on_screen(pilot, "stage       2/3", "from small-7:300")
        for chart in ("#chart-loss", "#chart-lr", "#chart-tps"):
            assert pane.query_one(chart).marks == [100, 250]
        await pilot.press("2")  # the queue tab
        await on_screen(pilot, "200/400", "stage 2/3")


async def test_a_missing_or_broken_run_directory_is_a_message(trained, tmp_path):
    runs = copy_runs(trained, tmp_path)
    conv, plain = trained[1]["conv"], trained[1]["plain"]
    (runs / plain / "state.json").write_text("{not json")
    app = CockpitApp(runs, tmp_path / "corpora", tab="training", run=plain, tick_s=0.1)
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.pane("training")
        await wait_for(pilot, lambda: pane.data is not None, "a load")
        assert "state.json is damaged" in pane.data.message
        await on_screen(pilot, "damaged")
        shutil.rmtree(runs / conv)
        pane.show_run(conv)
        await wait_for(pilot, lambda: "gone" in pane.data.message, "the gone message")
        await on_screen(pilot, "the run directory is gone")
        await pilot.press("2")  # the queue lists the broken run with its reason
        await wait_for(pilot, lambda: any(r.status == "broken" for r in app.pane("queue").rows), "queue")


# -- completion ---------------------------------------------------------------------------

async def completion_for(pilot, run: str):
    """The Completion tab once its run list has loaded, with ``run`` chosen."""
    pane = pilot.app.pane("completion")
    await wait_for(pilot, lambda: pane._runs, "the run list")
    pane.query_one("#comp-run").value = run
    return pane


async def test_completion_tab_generates_text_and_conviction_rows_and_stops(trained, tmp_path):
    runs = copy_runs(trained, tmp_path)
    conv = trained[1]["conv"]
    app = CockpitApp(runs, tmp_path / "corpora", tab="completion", tick_s=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await completion_for(pilot, conv)
        await pilot.pause()
        pane.query_one("#comp-max").value = "24"
        await pilot.click("#comp-prompt")
        await pilot.press(*"Once upon")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: not pane.generating and pane.status.startswith(("max tokens", "end of")),
                       "a text completion")
        assert pane.completion
        await on_screen(pilot, "Once upon")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: not pane.generating and pane.status.startswith(("max tokens", "end of")),
                       "conviction rows")
        assert 1 <= len(pane.rows) <= 24
        assert all(0.0 <= r["conviction"] <= 1.0 for r in pane.rows)
        assert all(r["top"] and r["prob"] is not None for r in pane.rows)  # the inspector's alternatives
        # the heat map: the prompt, then the text; the inspector on the newest token, colours relative
        last = pane.rows[-1]
        n = len(pane.rows)
        await on_screen(pilot, f"token {n}/{n}", f"conviction {last['conviction']:.4f}", "alternatives",
                        "(this text)")
        if n > 1:  # escape leaves the prompt; left moves the inspector back a token
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.focused is pane.query_one("#comp-output"), "the output focused")
            await pilot.press("left")
            await on_screen(pilot, f"token {n - 1}/{n}", f"conviction {pane.rows[-2]['conviction']:.4f}")
        await pilot.press("r")  # rows, in as many columns as fit
        await on_screen(pilot, f"| {last['conviction']:.4f}")
        assert pane.as_rows
        await pilot.click("#comp-prompt")
        # stop: a long generation ends early on escape, and the process is kept for the next one
        # greedy (top-k 1): a barely trained model repeats itself instead of ending its text, so
        # the generation is still going when the key lands
        pane.query_one("#comp-max").value = "100000"
        pane.query_one("#comp-topk").value = "1"
        for _ in range(3):
            await pilot.press("ctrl+g")
            await wait_for(pilot, lambda: len(pane.completion) > 5, "tokens to stream")
            await pilot.press("escape")
            await wait_for(pilot, lambda: not pane.generating, "the stop")
            if not pane.status.startswith("end of text"):
                break
        assert pane.status.startswith("stopped")
        proc = pane.client.proc
        assert proc.poll() is None
    assert proc.wait(timeout=120) is not None  # leaving the app ends the completion process


async def test_completion_tab_explains_what_it_cannot_do(trained, tmp_path):
    runs = copy_runs(trained, tmp_path)
    plain = trained[1]["plain"]
    app = CockpitApp(runs, tmp_path / "corpora", tab="completion", tick_s=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await completion_for(pilot, plain)
        topk = pane.query_one("#comp-topk")
        topk.focus()
        await pilot.press("x")  # a letter in a whole-number field: refused, and the field says why
        await wait_for(pilot, lambda: topk.border_subtitle == "whole numbers", "the reason on the field")
        assert topk.value == "50"
        pane.query_one("#comp-topk").value = "-3"
        await pilot.press("ctrl+g")
        assert "top-k >= 0" in pane.status and not pane.generating
        pane.query_one("#comp-topk").value = "5"
        await pilot.press("ctrl+g")  # nothing typed: said, nothing started
        assert "type a prompt first" in pane.status and not pane.generating and pane.client is None
        pane.query_one("#comp-prompt").text = "Once"
        await pilot.press("ctrl+o")  # refused from the run's config, before any model is loaded
        assert "without [conviction]" in pane.status and not pane.generating and pane.client is None
        # escape in an open dropdown closes it and nothing else: focus stays on the dropdown
        select = pane.query_one("#comp-step")
        select.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: select.expanded, "the dropdown open")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not select.expanded, "the dropdown closed")
        assert app.focused is select
        # the model process is let go IDLE_CLOSE_S after leaving the tab, counted from leaving it:
        # switching between other tabs must not restart the clock
        await pilot.press("escape")  # out of the dropdown's field: the number keys switch tabs
        await pilot.press("2")
        await wait_for(pilot, lambda: app.active_tab == "queue", "the Queue tab")
        left = pane.left_at
        assert left is not None
        await pilot.press("3")
        await wait_for(pilot, lambda: app.active_tab == "training", "the Training tab")
        assert pane.left_at == left
        await pilot.press("4")
        await wait_for(pilot, lambda: app.active_tab == "completion", "back")
        assert pane.left_at is None
        await pilot.click("#comp-prompt")
        await pilot.press("2")  # typing in the prompt ...
        assert app.active_tab == "completion" and "2" in pane.query_one("#comp-prompt").text
        await pilot.press("escape", "2")  # ... until escape leaves it: then 2 is the Queue tab
        await wait_for(pilot, lambda: app.active_tab == "queue", "the Queue tab")
        await pilot.pause(0.5)
        assert app.active_tab == "queue" and app.focused is app.pane("queue").query_one("#queue-table")  # and stays


async def test_completion_tab_serves_the_run_over_http_and_stops_it(trained, tmp_path):
    import urllib.request

    runs = copy_runs(trained, tmp_path)
    conv = trained[1]["conv"]
    app = CockpitApp(runs, tmp_path / "corpora", tab="completion", tick_s=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await completion_for(pilot, conv)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: pane.server is not None and pane.server.url, "the server's URL")
        server = pane.server
        await on_screen(pilot, server.url)
        body = json.dumps({"prompt": "one", "n_predict": 3}).encode()
        req = urllib.request.Request(server.url + "completion", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=PATIENCE) as r:
            out = json.load(r)
        assert out["model"] == conv and len(out["convictions"]) == 3
        await pilot.press("ctrl+s")  # stops it
        await wait_for(pilot, lambda: server.proc.poll() is not None, "the server to stop")
        assert server.proc.returncode == 0 and pane.server is None
        await pilot.press("ctrl+s")  # and again: leaving the app stops it too
        await wait_for(pilot, lambda: pane.server is not None and pane.server.url, "the second server")
        second = pane.server
    assert second.proc.wait(timeout=PATIENCE) == 0


# -- corpora ------------------------------------------------------------------------------

def write_jsonl(path: Path, texts: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


async def test_corpora_tab_counts_then_mixes_two_corpora(tmp_path):
    from cockpit.corpora.count import count_file

    corpora = tmp_path / "corpora"
    write_jsonl(corpora / "alpha" / "a.jsonl", [f"alpha story number {i} " * 3 for i in range(200)])
    write_jsonl(corpora / "beta.jsonl", [f"beta {i}" for i in range(300)])
    app = CockpitApp(tmp_path / "runs", corpora, tab="corpora", tokenizer="bytes", tick_s=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.pane("corpora")
        await wait_for(pilot, lambda: len(pane.items) == 2 and not pane.needs_count() and not pane.counting,
                       "the automatic count")
        alpha = next(i for i in pane.items if i.name == "alpha")
        assert alpha.tokens["bytes"] == count_file(corpora / "alpha" / "a.jsonl", "bytes").tokens
        await on_screen(pilot, "counted")
        await pilot.press("space", "down", "space", "m")
        await pilot.pause(0.3)
        form = app.screen
        assert form.query_one("#mix-sources").text.count("=0.5") == 2
        form.query_one("#mix-out").value = str(corpora / "mixed")
        form.query_one("#mix-tokens").value = "2K"
        await pilot.press("f5")
        await wait_for(pilot, lambda: "would hold" in str(form.query_one("#mix-result").render()), "preview")
        assert "2,000 bytes tokens" in str(form.query_one("#mix-result").render())
        assert not (corpora / "mixed").exists()  # a preview writes nothing
        await pilot.press("f6")
        await wait_for(pilot, lambda: "wrote" in str(form.query_one("#mix-result").render()), "the mix")
        assert (corpora / "mixed" / "mix.toml").exists()
        await pilot.press("f6")  # a second write refuses to replace the first
        await wait_for(pilot, lambda: "already exists" in str(form.query_one("#mix-result").render()), "refusal")
        # more tokens than a source holds at its share: an error, unless repeating is allowed
        form.query_one("#mix-out").value = str(corpora / "repeated")
        form.query_one("#mix-tokens").value = "200K"
        await pilot.press("f5")
        await wait_for(pilot, lambda: "too small" in str(form.query_one("#mix-result").render()), "the shortfall")
        form.query_one("#mix-repeat").value = True
        await pilot.press("f5")
        await wait_for(pilot, lambda: "would hold 200,000" in str(form.query_one("#mix-result").render()),
                       "a preview that repeats")
        await pilot.press("escape")
        await wait_for(pilot, lambda: any(i.name == "mixed" for i in pane.items), "the new corpus listed")


async def test_corpora_tab_keeps_why_a_tokenizer_cannot_count_and_still_shows_documents(tmp_path, monkeypatch):
    from runspec.data.tokenizers import get_tokenizer

    # a tiktoken cache that is a file: the encoding can neither be read nor downloaded into it
    (tmp_path / "not-a-dir").write_text("")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "not-a-dir"))
    get_tokenizer.cache_clear()
    corpora = tmp_path / "corpora"
    write_jsonl(corpora / "alpha" / "a.jsonl", [f"alpha {i}" for i in range(200)])
    write_jsonl(corpora / "beta.jsonl", [f"beta {i}" for i in range(300)])
    app = CockpitApp(tmp_path / "runs", corpora, tab="corpora", tokenizer="r50k_base", tick_s=0.1)
    async with app.run_test(size=(160, 30)) as pilot:
        pane = app.pane("corpora")
        await wait_for(pilot, lambda: "r50k_base" in pane.count_errors and not pane.counting and
                       all(i.status == "counted" for i in pane.items), "the count with bytes")
        screen = await on_screen(pilot, "500", "no r50k_base tokens:", "r50k_base cannot count here", "total")
        assert "200" in screen and "300" in screen  # each corpus's documents, though no r50k_base tokens
        table = pane.query_one("#corpora-table")
        assert table.row_count == 3  # two corpora and the totals row
        # choosing a tokenizer hands focus back to the table (space there marks; in the dropdown it reopened it)
        pane.query_one("#corpora-tokenizer").value = "bytes"
        await wait_for(pilot, lambda: app.focused is table, "focus on the table")
        await wait_for(pilot, lambda: not pane.counting and not pane.needs_count(), "the bytes count")
        await on_screen(pilot, "counted")
    get_tokenizer.cache_clear()


# -- compare ------------------------------------------------------------------------------

async def test_compare_tab_picks_runs_or_a_sweep_and_shows_table_overlay_and_fit(trained, tmp_path):
    from runspec.run.rundir import RunDir

    runs = copy_runs(trained, tmp_path)
    conv, plain = trained[1]["conv"], trained[1]["plain"]
    for rid in (conv, plain):  # as if one sweep had made them
        rd = RunDir(runs / rid)
        meta = rd.read_meta()
        meta.sweep = "pair-20261124-000000"
        rd.write_meta(meta)
    # a queued run has nothing to compare yet: not listed
    queued = cockpit("--runs-dir", str(runs), "queue", "add", str(trained[0].parent / "plain.toml"))
    assert queued.returncode == 0, queued.stderr
    app = CockpitApp(runs, tmp_path / "corpora", tab="compare", tick_s=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.pane("compare")
        await wait_for(pilot, lambda: set(pane._listed) == {conv, plain}, "the runs listed")
        await on_screen(pilot, "pick two or more runs")
        # one run picked by hand (space on the focused list) is not yet a comparison
        await pilot.press("space")
        await wait_for(pilot, lambda: len(pane.chosen) == 1, "one pick")
        await on_screen(pilot, "1 picked")
        # the sweep picks both
        pane.query_one("#cmp-sweep").value = "pair-20261124-000000"
        await wait_for(pilot, lambda: len(pane._summaries) == 2, "the comparison")
        screen = await on_screen(pilot, "conviction.enabled", "final val loss", "conviction AUROC", "chart line")
        assert "model.d_model" not in screen  # the same in both: not shown
        chart = pane.query_one("#cmp-chart")
        await wait_for(pilot, lambda: len(chart.lines) == 2, "both validation curves")
        assert all(xs[-1] == 30 for xs, _ in chart.lines.values())
        await pilot.press("m")
        await wait_for(pilot, lambda: chart.title == "train/loss" and len(chart.lines) == 2, "the next metric")
        await pilot.press("f")
        await on_screen(pilot, "a scaling fit needs 5 or more")
        await pilot.press("f")
        assert chart.display
        await pilot.press("a")
        await wait_for(pilot, lambda: not pane.chosen and not pane._summaries, "picks cleared")


def test_legend_labels_are_shortened_to_fit_not_cut_after_the_first():
    from cockpit.tui.training_pane import LEGEND_MARK, fit_labels

    labels = ["lm_head", "output_projection", "conviction_head", "blocks.attention.qkv", "blocks.ffn.up", "wte"]
    assert fit_labels(labels, 200) == labels  # room for all: as they are
    got = fit_labels(labels, 80)
    assert sum(len(x) + LEGEND_MARK for x in got) <= 80 and len(got) == len(labels)
    assert all(g == x or (g.endswith("…") and x.startswith(g[:-1])) for g, x in zip(got, labels))
    assert got[0] == "lm_head" and got[-1] == "wte"  # short labels stay whole


def test_comma_and_full_stop_step_through_running_runs_first():
    """Before: '.' from the running run jumped to the newest queued run, not the other running one."""
    from cockpit.tui.training_pane import cycle_order

    runs = [("q2", "queued"), ("q1", "queued"), ("r2", "running"), ("done", "completed"), ("r1", "running")]
    order = cycle_order(runs)
    assert order == ["r2", "r1", "q2", "q1", "done"]
    assert order[(order.index("r2") + 1) % len(order)] == "r1"


async def test_the_compare_picker_works_from_the_keyboard(trained, tmp_path):
    """Before: Tab took the focus to the cursorless table, and Down and space then did nothing
    ('0 picked' stayed). Now the table never takes focus and Down on the tab bar enters the tab."""
    runs = copy_runs(trained, tmp_path)
    app = CockpitApp(runs, tmp_path / "corpora", tab="queue", tick_s=0.1)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("5")
        pane = app.pane("compare")
        await wait_for(pilot, lambda: len(pane._listed) == 2, "the runs listed")
        lst = pane.query_one("#cmp-runs")
        await wait_for(pilot, lambda: app.focused is lst, "focus on the run list")
        await pilot.press("tab")  # away from the list (to the tab bar) ...
        assert app.focused is not pane.query_one("#cmp-table")
        await pilot.press("down")  # ... and back into the tab
        await wait_for(pilot, lambda: app.focused is lst, "focus back on the list")
        await pilot.press("space")
        await wait_for(pilot, lambda: len(pane.chosen) == 1, "one pick")
        await on_screen(pilot, "1 picked")
        await pilot.press("down", "space")
        await wait_for(pilot, lambda: len(pane._summaries) == 2, "two picks compared")
        await on_screen(pilot, "2 runs")
        assert lst.highlighted == 1
        await pilot.press("b")  # the highlighted pick becomes the baseline column
        await wait_for(pilot, lambda: pane.baseline == lst.get_option_at_index(1).value, "a baseline")
        await on_screen(pilot, "Δ against", "Δ val loss, equal steps")
        tbl = pane.query_one("#cmp-table")  # the last rows sit below the fold of a 40-row screen
        assert "Δ params" in [str(tbl.get_row_at(i)[0]) for i in range(tbl.row_count)]
        await pilot.press("b")  # again: no baseline
        await wait_for(pilot, lambda: pane.baseline is None, "the baseline cleared")


def test_corpora_tab_starts_on_the_tokenizer_the_newest_run_uses(tmp_path):
    from cockpit.tui.app import default_tokenizer
    from runspec.run.rundir import RunMeta

    runs = tmp_path / "runs"
    assert default_tokenizer(runs) == "bytes"  # no runs: bytes, which needs nothing (gpt2 did not load offline)
    for name, tok, created in (("old", "gpt2", 1.0), ("new", "cl100k_base", 2.0)):
        rd = RunDir(runs / name)
        rd.path.mkdir(parents=True)
        rd.create_state("completed", max_steps=1)
        (rd.path / "resolved.toml").write_text(f'[data]\ntokenizer = "{tok}"\n')
        rd.write_meta(RunMeta(name=name, created=created))
    assert default_tokenizer(runs) == "cl100k_base"


# -- help and palette ---------------------------------------------------------------------

async def test_help_lists_every_tab_and_the_palette_has_each_action(tmp_path):
    from cockpit.tui.app import pane_class

    app = CockpitApp(tmp_path / "runs", tmp_path / "corpora", tick_s=0.1)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        text = str(app.screen.query_one("Static").render())  # the whole help text, scrolled or not
        for expected in ("Queue tab", "Add config", "Training tab", "Compare runs", "Completion tab",
                         "Conviction", "Corpora tab", "Mix form", "Compare tab", "Scaling fit",
                         "Mix form (Corpora, m)", "Preview", "Overlay picker (Training, c)", "Clear all",
                         "alt+3", "One chart / all", "GPU/system details"):
            assert expected in text
        await pilot.press("escape")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for pane in ("corpora", "queue", "training", "completion", "compare"):
            for b in pane_class(pane).BINDINGS:
                assert f"{pane_class(pane).TITLE}: {b.description}" in titles
        # while the app closes its widgets leave the screen and the timer may still tick once:
        # that tick must not crash the app (seen under load: NoMatches 'TabbedContent')
        from textual.widgets import TabbedContent

        await app.screen.query_one(TabbedContent).remove()
        app._tick()


def test_a_tab_is_loaded_when_first_shown_not_at_start():
    """The first paint waits for the opening tab only: the Compare tab's fits (numpy, scipy) and
    the Corpora tab's tokenizers load when those tabs are first shown."""
    code = ("import sys, cockpit.tui.app; print(sorted(m for m in ('numpy', 'scipy', 'cockpit.tui.compare_pane', "
            "'cockpit.tui.corpora_pane', 'cockpit.tui.training_pane') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_cockpit_run_without_a_terminal_falls_back_to_headless(write_config, runs_dir):
    r = cockpit("--runs-dir", str(runs_dir), "run", str(write_config("h", {"train": {"max_steps": 5}})))
    assert r.returncode == 0, r.stderr
    assert "no terminal" in r.stderr

