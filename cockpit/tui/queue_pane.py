"""The Queue tab: every run with position, state, size, progress and ETA; keys to add,
move, stop, retry, remove; pause/resume and start the worker; worker and keep-awake state."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from cockpit import control
from cockpit.analysis.termplot import tick_label
from cockpit.eta import drain
from cockpit.format import hms
from cockpit.queue import Queue
from cockpit.runs import check_config, read_states
from cockpit.status import control_files, slot_usage, worker_status
from cockpit.tui.dialogs import Confirm, Prompt
from cockpit.tui.pane import Pane, fill_table
from cockpit.tui.runs_table import BROKEN, STATE_STYLE, RunRow, run_rows
from cockpit.worker import start_worker
from runspec.config.schema import ConfigError, RunConfig
from runspec.data.corpus import CorpusError
from runspec.run.rundir import FAILED, QUEUED, RUNNING

ASK_BEFORE_STOPPING_S = 600  # s asks first on a run that has trained this long
NAME_WIDTH = 26  # longer run names are cut (the line under the table has the whole id)


def short_ids(ids: list[str]) -> dict[str, str]:
    """Run ids without their creation stamps where the names stay unique, cut to NAME_WIDTH,
    so at 80 columns progress and ETA stay on screen."""
    from cockpit.analysis.compare import short_names

    bare = short_names(ids)[0] if ids else []
    return {i: (b if len(b) <= NAME_WIDTH else b[: NAME_WIDTH - 1] + "…") for i, b in zip(ids, bare)}


class QueuePane(Pane):
    TITLE = "Queue"
    BINDINGS = [
        Binding("a", "add", "Add config"),
        Binding("K,shift+up", "move('up')", "Move up"),
        Binding("J,shift+down", "move('down')", "Move down"),
        Binding("f", "move('front')", "To front"),
        Binding("s", "stop", "Stop"),
        Binding("r", "retry", "Retry"),
        Binding("x", "remove", "Remove"),
        Binding("p", "pause", "Pause/resume"),
        Binding("w", "start_worker", "Start worker"),
        Binding("enter", "open_run", "Watch run"),
    ]

    def __init__(self, runs_dir: Path, **kwargs):
        super().__init__(**kwargs)
        self.runs_dir = runs_dir
        self.rows: list[RunRow] = []
        self.paused = False
        self.worker_alive = False

    def compose(self) -> ComposeResult:
        yield Static("", id="queue-status", classes="status-line")
        yield DataTable(id="queue-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="queue-detail")  # the selected run's whole reason, however narrow the table

    # -- data ---------------------------------------------------------------------------
    def load(self):
        q = Queue(self.runs_dir)
        states = read_states(self.runs_dir)
        rows = run_rows(self.runs_dir, self.app.histories, states, queue=q)
        if q.recovered:  # a damaged queue.json was recovered by this read: say so
            self._to_ui(self.notify, q.recovered, severity="warning", timeout=15)
        return rows, q.paused, worker_status(q), control_files(q), drain(states, q.order, self.app.histories)

    def show(self, data) -> None:
        rows, self.paused, worker, files, drains = data
        self.worker_alive = worker["alive"]
        line = Text()
        line.append("worker ", style="bold")
        if worker["alive"]:
            pids = "; ".join(f"{w['pid']}: {slot_usage(w.get('slots', []))}" for w in worker["workers"])
            line.append(f"alive (pid {pids})", style="green")
        else:
            line.append("not running (w starts one)", style="yellow")
        if self.paused:
            line.append("   QUEUE PAUSED (p resumes)", style="bold yellow")
        line.append("   keep-awake ", style="bold")  # its state; the Training tab's i explains it
        line.append((files["keepawake"] or {}).get("state", "unknown"))
        if drains.runs:
            line.append(f"   {drains.line(clock=False)}", style="bold" if drains.unknown < drains.runs else "dim")
        self.query_one("#queue-status", Static).update(line)
        if rows != self.rows or not rows:
            self.rows = rows
            self._fill(rows)

    def _fill(self, rows: list[RunRow]) -> None:
        table = self.query_one("#queue-table", DataTable)
        selected = self.selected_id()
        cells = []
        names = short_ids([r.id for r in rows])
        for r in rows:
            progress = f"{r.step}/{r.max_steps}" if r.max_steps else str(r.step or "")
            if r.max_steps and r.status == RUNNING:
                progress += f" {100 * r.step / r.max_steps:3.0f}%"
            if r.phase:
                progress += f" stage {r.phase}"
            note = r.reason or (f"on {r.devices}" if r.devices else f"asks for {r.gpus} GPUs"
                                if r.status == QUEUED and r.gpus > 1 else "")
            # loss: the final validation loss of a finished run (bold), else the latest running
            # validation, else the training loss (dim): never a last train loss passed off as the result
            if r.val_loss is not None:
                loss = Text(f"{r.val_loss:.4f}", style="bold" if r.final else "")
            else:
                loss = Text(f"{r.loss:.4f}" if r.loss is not None else "", style="dim")
            when = f"ETA {hms(r.eta_s)}" if r.eta_s is not None else (hms(r.elapsed) if r.elapsed else "")
            # what matters first comes first: at 80 columns the table is cut after the loss
            cells.append((r.id, [str(r.position or ""), names[r.id], Text(r.status, style=STATE_STYLE.get(r.status, "")),
                                 progress, when, loss, f"{r.bpb:.3f}" if r.bpb is not None else "",
                                 tick_label(r.tok_s) if r.tok_s else "", r.size,
                                 Text(note, style="red" if r.status in (FAILED, BROKEN) else "dim")]))
        if not rows:
            cells.append(("", ["", Text("no runs yet: press a to add a config", style="dim"), *[""] * 8]))
        fill_table(table, ["#", "run", "state", "progress", "ETA/time", "val loss", "bpb", "tok/s", "size", "note"], cells)
        if rows and selected is not None and selected in {r.id for r in rows}:
            table.move_cursor(row=table.get_row_index(selected), animate=False)
        self._detail()

    def _detail(self) -> None:
        row = next((r for r in self.rows if r.id == self.selected_id()), None)
        text = Text()
        if row is not None:
            text.append(f"{row.id}: ", style="bold")
            text.append(row.status, style=STATE_STYLE.get(row.status, ""))
            if row.reason:
                text.append(f": {row.reason}", style="red" if row.status in (FAILED, BROKEN) else "")
            if row.figures:  # every final benchmark the run has, named by the metrics registry
                text.append("\nfinal: ", style="bold")
                text.append(" · ".join(row.figures))
        self.query_one("#queue-detail", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail()

    def selected_id(self) -> str | None:
        table = self.query_one("#queue-table", DataTable)
        if not self.rows or table.row_count == 0:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # no row under the cursor
            return None

    def _selected(self) -> str | None:
        run_id = self.selected_id()
        if run_id is None:
            self.notify("no run selected", severity="warning")
        return run_id

    # -- actions ------------------------------------------------------------------------
    def action_add(self) -> None:
        checked: dict[str, RunConfig] = {}  # what the dialog checked is what is queued: read once

        def check(path: str) -> str:
            if not path:
                return "give the path of a TOML config, e.g. examples/quickstart.toml"
            try:
                checked[path] = check_config(path)  # a small local file and its data's footers: cheap
            except (ConfigError, CorpusError) as e:
                return str(e)
            return ""

        def added(path: str | None) -> None:
            if path:
                cfg = checked.get(path)
                self.in_background(lambda: Queue(self.runs_dir).add([path], checked=[cfg] if cfg else None),
                                   lambda rds: self.notify(f"queued {rds[0].id}"), "queue-edit")

        self.app.push_screen(Prompt("Queue a run: path of a TOML config", "examples/quickstart.toml",
                                    check=check), added)

    def action_move(self, where: str) -> None:
        if (run_id := self._selected()) is None:
            return
        q = Queue(self.runs_dir)
        move = {"up": lambda: q.move(run_id, up=True), "down": lambda: q.move(run_id, down=True),
                "front": lambda: q.move(run_id, to=1)}[where]
        self.in_background(move, lambda pos: self.notify(f"{run_id} is now at position {pos}"), "queue-edit")

    def action_stop(self) -> None:
        if (run_id := self._selected()) is None:
            return
        row = next((r for r in self.rows if r.id == run_id), None)

        def stop(yes: bool | None = True) -> None:
            if yes:
                self.in_background(lambda: control.stop(Queue(self.runs_dir), run_id), self.notify, "queue-edit")

        if row is not None and row.status == RUNNING and row.elapsed >= ASK_BEFORE_STOPPING_S:
            # a slip of the finger should not cost an evening's run its momentum (it resumes, but still)
            self.app.push_screen(Confirm(f"Stop {run_id}? It has trained for {hms(row.elapsed)} (step {row.step:,}/"
                                         f"{row.max_steps:,}); it checkpoints first and r resumes it."), stop)
        else:
            stop()

    def action_retry(self) -> None:
        if (run_id := self._selected()) is not None:
            self.in_background(lambda: control.retry(Queue(self.runs_dir), run_id),
                               lambda rd: self.notify(f"{rd.id} queued again; it resumes from its checkpoint"),
                               "queue-edit")

    def action_remove(self) -> None:
        if (run_id := self._selected()) is None:
            return
        row = next((r for r in self.rows if r.id == run_id), None)
        if row is not None and row.status == RUNNING:
            # deleting a training run's directory from under its engine is never what was meant
            self.notify(f"{run_id} is running: press s to stop it first, then x to delete it", severity="warning")
            return
        finished = row is not None and row.status != QUEUED

        def answered(yes: bool | None) -> None:
            if yes:
                self.in_background(lambda: control.remove(Queue(self.runs_dir), run_id, force=finished),
                                   lambda _: self.notify(f"removed {run_id}"), "queue-edit")

        question = (f"Delete {run_id}? It is {row.status}: its directory (checkpoints, events) goes too."
                    if finished else f"Take {run_id} out of the queue and delete it?")
        self.app.push_screen(Confirm(question), answered)

    def action_pause(self) -> None:
        paused = not self.paused
        self.in_background(lambda: Queue(self.runs_dir).set_paused(paused),
                           lambda _: self.notify("queue paused: no new runs start" if paused else "queue resumed"),
                           "queue-edit")

    def action_start_worker(self) -> None:
        if self.worker_alive:
            self.notify("a worker is already running")
            return
        self.in_background(lambda: start_worker(self.runs_dir),
                           lambda p: self.notify(f"worker started (pid {p.pid}): it trains the queue in order and "
                                                 f"exits when the queue is empty; log: runs/.cockpit/worker.log"),
                           "queue-edit")

    def action_open_run(self) -> None:
        if (run_id := self._selected()) is not None:
            self.app.watch_run(run_id)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.app.watch_run(event.row_key.value)
