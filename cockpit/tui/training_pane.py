"""The Training tab: one run's charts against step (loss with validation, learning rate,
grad norms per module, tokens/s), its current numbers, GPU and keep-awake, the latest
sample; other runs' validation loss overlaid to compare. Live while the run trains, from
history once it has finished."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Label, Select, SelectionList
from textual_plotext.plot import Plot

from cockpit.format import hms, number
from cockpit.gpu import GpuMonitor
from cockpit.history import RunView, eta_s, quiet_after_s
from cockpit.queue import Queue
from cockpit.runs import read_states
from cockpit.status import control_files, gpu_lines, keepawake_line
from cockpit.sysinfo import HostMonitor
from cockpit.tui.pane import Pane, Readout
from runspec.run.metrics import (
    CONVICTION_AUROC,
    CONVICTION_SPEARMAN,
    DATA_WAIT,
    DEBUG,
    FINAL_BPB,
    FINAL_LOSS,
    GRAD_NORM,
    GRAD_NORM_PREFIX,
    LR,
    MFU,
    STEP_MS,
    TOKENS_PER_S,
    TRAIN_LOSS,
    VAL_BPB,
    VAL_LOSS,
    is_named_loss,
    shared_cpu,
)
from runspec.run.rundir import RUNNING

clock = time.time  # wall time for the age of the last event (a snapshot test fixes it)
CHART_INTERVAL_S = 1.0
GPU_STALE_S = 5.0  # gpus.json older than this: the worker is not sampling  # charts redraw at most this often, however fast events arrive
# RGB, not colour names: plotext maps names through its theme, which Textual registers late
PALETTE = [(0, 200, 255), (255, 90, 200), (255, 200, 0), (80, 220, 100), (255, 80, 80), (120, 120, 255),
           (220, 220, 220)]



@dataclass
class TrainingData:
    runs: list[tuple[str, str]]  # (id, status) of every run, newest first
    view: RunView | None = None
    message: str = ""
    overlays: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    files: dict = field(default_factory=dict)


_PLOTEXT_LOCK = threading.Lock()


class Chart(Widget):
    """A plotext chart whose picture is built in a worker thread: plotext is pure Python and
    takes 20-60 ms a chart, which on the UI thread would stall keys four charts at a time.
    The widget only shows the last finished picture; ``lines`` keeps what it was asked to draw."""

    DEFAULT_CSS = "Chart { width: 1fr; height: 1fr; }"

    def __init__(self, title: str, legend: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.title = title
        self.legend = legend  # off where the lines' colours are named elsewhere (the compare table)
        self.lines: dict[str, tuple[list[float], list[float]]] = {}
        self.bands: dict[str, tuple[list[float], list[float], list[float]]] = {}
        self.points: set[str] = set()  # series drawn as markers, over the lines (validation)
        self.log_y = False
        self.marks: list[int] = []
        self.draws = 0  # pictures finished and shown
        self._picture: list[Strip] = []
        self._generation = 0
        self._shown_generation = 0

    def draw(self, lines: dict[str, tuple[list[float], list[float]]], log_y: bool = False,
             marks: list[int] | None = None, points: set[str] | frozenset = frozenset(), title: str | None = None,
             bands: dict[str, tuple[list[float], list[float], list[float]]] | None = None) -> None:
        """``marks``: steps drawn as vertical lines (where a stage begins); ``points``: series
        drawn as markers over the lines, so a sparse validation curve and the training line
        never hide each other; ``bands``: (x, low, high) of a line's spread (a seed group's mean
        ± one standard deviation), drawn as dim dots in the line's colour."""
        self.lines = {k: v for k, v in lines.items() if v[0]}
        self.bands = {k: v for k, v in (bands or {}).items() if k in self.lines and v[0]}
        self.points = set(points)
        if title is not None:
            self.title = title
        self.log_y = log_y
        self.marks = list(marks or [])
        self._build()

    def on_resize(self) -> None:
        self._build()

    def _build(self) -> None:
        width, height = self.size
        if width < 10 or height < 3:
            return
        self._generation += 1
        job = (self._generation, dict(self.lines), self.log_y, width, height, list(self.marks), set(self.points),
               dict(self.bands))
        self.run_worker(lambda: self._make(*job), thread=True, group=f"chart-{self.id}", exit_on_error=False)

    def _make(self, generation: int, lines, log_y: bool, width: int, height: int, marks: list[int],
              points: set[str], bands: dict | None = None) -> None:
        # one picture at a time: plotext keeps state outside its figure objects, and four charts
        # built at once in their threads now and then drew one chart with another's tick rows
        # (a snapshot test caught it). The GIL let them take turns anyway: nothing is lost.
        with _PLOTEXT_LOCK:
            self._make_locked(generation, lines, log_y, width, height, marks, points, bands or {})

    def _make_locked(self, generation: int, lines, log_y: bool, width: int, height: int, marks: list[int],
                     points: set[str], bands: dict | None = None) -> None:
        from cockpit.analysis.termplot import tick_labels, ticks

        # the legend is a line of its own above the plot: inside, it covered the data (the
        # six-series grad-norm legend hid the first 40% of the run)
        legend = None
        if self.legend and len(lines) > 1 and height >= 6:
            legend = Text(no_wrap=True, overflow="ellipsis")
            for i, (label, shown) in enumerate(zip(lines, fit_labels(list(lines), width))):
                legend.append("•  " if label in points else "━━ ",
                              style=Style(color=Color.from_rgb(*PALETTE[i % len(PALETTE)]), bold=True))
                legend.append(f"{shown}  ")
        plot_h = height - 1 if legend is not None else height
        plt = Plot()
        plt.plotsize(width, plot_h)
        plt.theme("clear")  # the terminal's own colours; the lines get RGB
        plt.title(self.title + (" (log)" if log_y and lines else ""))
        if log_y and lines:
            plt.yscale("log")
        all_x: list[float] = []
        all_y: list[float] = []
        colours = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(lines)}  # the legend's order
        for label, (xs, low, high) in (bands or {}).items():  # under the lines: the spread, dim
            dim = tuple(int(c * 0.55) for c in colours[label])
            for edge in (low, high):
                bx, by = thin(list(xs), list(edge), width)
                kept = [(x, y) for x, y in zip(bx, by) if y > 0 or not log_y]
                if kept:
                    plt.scatter([x for x, _ in kept], [y for _, y in kept], color=dim, marker="·")
                    all_x += [x for x, _ in kept]
                    all_y += [y for _, y in kept]
        # lines first, markers over them: a marker hides one cell of a line, while a line drawn
        # over the markers hid every validation point that sat on the training curve
        for label in sorted(lines, key=lambda name: name in points):
            xs, ys = lines[label]
            if log_y:
                kept = [(x, y) for x, y in zip(xs, ys) if y > 0]
                xs, ys = [x for x, _ in kept], [y for _, y in kept]
            xs, ys = thin(list(xs), list(ys), 2 * width)  # braille: two dots a column, no more
            if xs:
                if label in points:
                    plt.scatter(xs, ys, color=colours[label], marker="•")
                else:
                    plt.plot(xs, ys, color=colours[label], marker="braille")
                all_x += xs
                all_y += ys
        if all_x:
            # readable ticks: whole steps on x, 19.1k / 2.2e-3 / 0.25 on y (plotext printed 19131.3, 0.00224)
            xt = [round(v) for v in ticks(min(all_x), max(all_x), False, 4 if width < 50 else 5)]
            plt.xticks(xt, tick_labels(xt))
            # no more ticks than every other row of the canvas: where two fall on one row plotext
            # picks one label by an order that changes between processes (a flaky snapshot)
            canvas = plot_h - 4 - (1 if plot_h >= 14 else 0)  # title, frame top/bottom, x labels, x title
            most = max(2, (canvas + 1) // 2)
            yt = ticks(min(all_y), max(all_y), log_y, min(5, most))
            while len(yt) > most:
                yt = yt[::2] if len(yt) % 2 else [*yt[:-1:2], yt[-1]]
            plt.yticks(yt, tick_labels(yt))
            if plot_h >= 14:
                plt.xlabel("step")
        for step in marks:  # a stage boundary inside the plotted steps
            if all_x and min(all_x) <= step <= max(all_x):
                plt.vline(step, color="gray")
        # the cells too are made here: turning a dense coloured Text into lines costs the UI
        # thread 10-30 ms a chart, which is what the flood benchmark measured as key lag
        console = self.app.console
        text = Text.from_ansi(plt.build())
        segments = console.render(text, console.options.update_width(width))
        picture = [Strip(line, width) for line in Segment.split_and_crop_lines(segments, width, pad=True, include_new_lines=False)][:plot_h]
        if legend is not None:
            head = Segment.split_and_crop_lines(console.render(legend, console.options.update_width(width)), width,
                                                pad=True, include_new_lines=False)
            picture = [Strip(list(head)[0], width), *picture]
        try:
            self.app.call_from_thread(self._show_picture, generation, picture)
        except RuntimeError:  # the app is closing
            pass

    def _show_picture(self, generation: int, picture: list[Strip]) -> None:
        if generation != self._generation:
            return  # a newer picture is on its way; this one is stale
        self._picture = picture
        self._shown_generation = generation
        self.draws += 1
        self.refresh()

    @property
    def pending(self) -> bool:
        """A picture was asked for and is not on screen yet (tests wait on this)."""
        return self._shown_generation != self._generation

    def render_line(self, y: int) -> Strip:
        line = self._picture[y] if y < len(self._picture) else Strip.blank(self.size.width)
        return line.apply_style(self.rich_style)


def thin(xs: list[float], ys: list[float], n: int) -> tuple[list[float], list[float]]:
    """At most n points, each the mean of a run of neighbours; the last point is kept as is."""
    if len(xs) <= n or n < 2:
        return xs, ys
    step = len(xs) / (n - 1)
    out_x, out_y = [], []
    for i in range(n - 1):
        a, b = int(i * step), max(int(i * step) + 1, int((i + 1) * step))
        out_x.append(sum(xs[a:b]) / (b - a))
        out_y.append(sum(ys[a:b]) / (b - a))
    return out_x + [xs[-1]], out_y + [ys[-1]]


def ema(ys: list[float], keep: float = 0.8) -> list[float]:
    """Exponential moving average, debiased (the first points are not pulled toward zero)."""
    out, s, w = [], 0.0, 0.0
    for y in ys:
        s, w = keep * s + (1 - keep) * y, keep * w + (1 - keep)
        out.append(s / w)
    return out


# the chart shown alone in single-chart mode, in the order `v` cycles through (None: all four)
CHART_MODES: list[str | None] = [None, "loss", "lr", "grad", "tps"]
SMALL = (110, 32)  # below this size (columns, rows) the tab opens on one large chart


class CompareRuns(ModalScreen[list[str] | None]):
    """Which runs' validation loss to overlay: the shown run and runs with no events yet are
    not offered; the checked ones are named above the list as they change."""

    AUTO_FOCUS = "*"  # the app sets none; a dialog focuses its first field
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("enter", "done", "Overlay", priority=True),
                Binding("a", "clear", "Clear all")]

    def __init__(self, runs: list[str], chosen: list[str], shown: str | None = None):
        super().__init__()
        self.runs, self.chosen, self.shown = runs, [r for r in chosen if r in runs], shown

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Overlay on {self.shown or 'the shown run'} the validation loss of (space: check, a: clear "
                        f"all, enter: overlay, escape: cancel; any metric: the Compare tab, 5)")
            yield Label("", id="compare-checked")
            yield SelectionList[str](*[(r, r, r in self.chosen) for r in self.runs], id="compare-list")

    def on_mount(self) -> None:
        self._checked()
        if not self.runs:
            self.query_one("#compare-checked", Label).update("no other run has data yet")

    def on_selection_list_selected_changed(self, event) -> None:
        self._checked()

    def _checked(self) -> None:
        picked = list(self.query_one(SelectionList).selected)
        self.query_one("#compare-checked", Label).update(
            Text(f"checked ({len(picked)}): " + ", ".join(picked), style="bold") if picked else
            Text("checked: none", style="dim"))

    def action_clear(self) -> None:
        self.query_one(SelectionList).deselect_all()

    def action_done(self) -> None:
        self.dismiss(list(self.query_one(SelectionList).selected))

    def action_cancel(self) -> None:
        self.dismiss(None)


class TrainingPane(Pane):
    TITLE = "Training"
    BINDINGS = [
        Binding("c", "compare", "Compare runs"),
        Binding("l", "log", "Engine log"),
        Binding("o", "config", "Config"),
        Binding("g", "running", "Go to running"),
        Binding("comma", "cycle(-1)", "Prev run"),
        Binding("full_stop", "cycle(1)", "Next run"),
        Binding("v", "chart_mode", "One chart / all"),
        Binding("e", "smooth", "EMA on/off"),
        Binding("i", "system", "GPU/system details"),
        Binding("left_square_bracket", "scroll_side(-4)", "Numbers up", show=False),
        Binding("right_square_bracket", "scroll_side(4)", "Numbers down", show=False),
    ]

    def __init__(self, runs_dir: Path, **kwargs):
        super().__init__(**kwargs)
        self.runs_dir = runs_dir
        self.run_id: str | None = None  # None: follow the running run
        self.runs: list[tuple[str, str]] = []
        self.data: TrainingData | None = None
        self._drawn_at = 0.0
        self._monitor: GpuMonitor | None = None
        self._host = HostMonitor()
        self._drawn_events = -1
        self.mode: str | None = None  # one chart alone (CHART_MODES), or all four
        self._mode_chosen = False  # by the user: then a resize no longer picks it
        self.smooth = False  # EMA of the training loss
        self.overlay = load_overlay(runs_dir)  # the compare picks survive a restart

    def compose(self) -> ComposeResult:
        with Horizontal(id="train-top"):
            yield Select[str]([], prompt="run", id="train-run", allow_blank=True)
            yield Readout("", id="train-overlay")
        yield Readout("", id="train-message", classes="message")
        with Horizontal(id="train-body"):
            with Grid(id="charts"):
                yield Chart("loss", id="chart-loss")
                yield Chart("learning rate", id="chart-lr")
                yield Chart("grad norm", id="chart-grad")
                yield Chart("tokens/s", id="chart-tps")
            with VerticalScroll(id="train-side"):
                yield Readout("", id="train-numbers")
                yield Readout("", id="train-system")
        yield Readout("", id="train-sample")

    # -- data (worker thread) -----------------------------------------------------------
    def load(self) -> TrainingData:
        states = read_states(self.runs_dir)
        newest_first = sorted(states.values(), key=lambda x: -(x.state.updated if x.state else 0))
        runs = [(x.rd.id, x.status) for x in newest_first]
        data = TrainingData(runs, files=control_files(Queue(self.runs_dir)))
        data.files["gpus"] = self._gpus(data.files.get("gpus") or {})
        if not data.files["gpus"].get("gpus"):  # shown only where there is no GPU
            data.files["host"] = self._host.sample().line()
        run_id = self.run_id or next((r for r, s in runs if s == RUNNING), runs[0][0] if runs else None)
        if run_id is None:
            data.message = f"no runs under {self.runs_dir}/ yet: queue one on the Queue tab (a) or cockpit run x.toml"
            return data
        if run_id not in states:
            path = self.runs_dir / run_id
            data.message = (f"{path}: no state.json, so this is not a run directory" if path.is_dir() else
                            f"{path}: the run directory is gone (deleted or moved); pick another run")
            return data
        rd, state = states[run_id].rd, states[run_id].state
        if state is None:
            data.message = f"{states[run_id].problem}; the run directory is damaged"
            return data
        h = self.app.histories.get(rd)
        h.poll()
        data.view = h.view(state)
        if not rd.events.exists():
            data.message = f"{run_id} is {state.status}: no events yet" + (
                " (waiting for the worker: see the Queue tab)" if state.status == "queued" else "")
        for other in self.overlay:
            if other == run_id or other not in states:
                continue
            oh = self.app.histories.get(states[other].rd)
            oh.poll()
            pts = oh.view(state=state, names=[VAL_LOSS]).series.get(VAL_LOSS)
            if pts:
                data.overlays[other] = pts
        return data

    def _gpus(self, from_worker: dict) -> dict:
        """The worker's GPU figures while it writes them; otherwise (no worker, a headless run
        in another terminal) this tab asks NVML itself, from its worker thread."""
        if time.time() - from_worker.get("time", 0) < GPU_STALE_S:
            return from_worker
        if self._monitor is None:
            self._monitor = GpuMonitor()
        return self._monitor.snapshot()

    # -- drawing (UI thread) ------------------------------------------------------------
    def show(self, data: TrainingData) -> None:
        self.data = data
        self._update_runs(data.runs, data.view.id if data.view else None)
        message = self.query_one("#train-message", Readout)
        message.set(Text(data.message, style="bold yellow"))
        message.display = bool(data.message)
        self.query_one("#train-overlay", Readout).set(
            Text("overlay: " + ", ".join(self.overlay), style="dim") if self.overlay else Text("c: compare runs", style="dim"))
        self._numbers(data)
        v = data.view
        sample = self.query_one("#train-sample", Readout)
        if v is not None and v.sample:
            sample.set(Text.assemble((f"sample @ step {v.sample[0]}: ", "bold"), v.sample[1].replace("\n", " ⏎ ")))
        else:
            sample.set(Text("no sample yet", style="dim"))
        # charts only when something changed, and at a steady rate however fast events come
        changed = v is not None and (v.events, tuple(data.overlays)) != self._drawn_events
        if changed and time.monotonic() - self._drawn_at >= CHART_INTERVAL_S or (v is None and self._drawn_events):
            self._draw(data)

    @property
    def charts_behind(self) -> bool:
        """The data changed since the charts were drawn (a redraw waits for its slot; tests wait on this)."""
        v = self.data.view if self.data else None
        return v is not None and (v.events, tuple(self.data.overlays)) != self._drawn_events

    def _update_runs(self, runs: list[tuple[str, str]], current: str | None) -> None:
        select = self.query_one("#train-run", Select)
        ids = [r for r, _ in runs]
        if ids != [r for r, _ in self.runs]:
            self.runs = runs
            with select.prevent(Select.Changed):
                select.set_options([(r, r) for r, _ in runs])
        if current is not None and select.value != current:
            with select.prevent(Select.Changed):
                select.value = current

    def _draw(self, data: TrainingData) -> None:
        v = data.view
        series = v.series if v is not None else {}
        train = series.get(TRAIN_LOSS, ([], []))
        if self.smooth:
            train = (train[0], ema(train[1]))
        loss = {"train (EMA)" if self.smooth else "train": train, "val": series.get(VAL_LOSS, ([], []))}
        loss.update({f"{k} val": pts for k, pts in data.overlays.items()})
        # the model's named losses (conviction, moe_balance, T12's aux and its terms ...), whatever they are
        loss.update({k[len(DEBUG) + 1:]: pts for k, pts in series.items() if is_named_loss(k)})
        marks = v.stage_marks if v is not None else []
        points = {"val", *(f"{k} val" for k in data.overlays)}  # validation as markers over the train line
        self.query_one("#chart-loss", Chart).draw(loss, log_y=True, marks=marks, points=points)  # linear put every curve in the bottom row
        self.query_one("#chart-lr", Chart).draw({"lr": series.get(LR, ([], []))}, marks=marks)
        grads = {"global": series.get(GRAD_NORM, ([], []))}
        grads.update({k[len(GRAD_NORM_PREFIX):]: pts for k, pts in series.items() if k.startswith(GRAD_NORM_PREFIX)})
        self.query_one("#chart-grad", Chart).draw(grads, log_y=True, marks=marks)
        self.query_one("#chart-tps", Chart).draw({"tokens/s": series.get(TOKENS_PER_S, ([], []))}, marks=marks)
        self._drawn_at = time.monotonic()
        self._drawn_events = (v.events, tuple(data.overlays)) if v is not None else 0

    def _numbers(self, data: TrainingData) -> None:
        t = Text()
        v = data.view
        if v is not None:
            st = v.state
            # the run's id is in the picker above; at 80 columns it would wrap here
            t.append(st.status, style={"running": "bold green", "failed": "bold red"}.get(st.status, "cyan"))
            if st.reason:
                t.append(f": {st.reason}", style="red" if st.status == "failed" else "dim")
            t.append("\n")
            if v.start:  # the whole description where it fits; its label (2L×32) where it would wrap (o: config)
                wide = self.size.width >= 120
                what = v.start.get("model", "") if wide else v.start.get("label") or v.start.get("model", "")
                t.append(f"{what} {v.start.get('params', 0):,} params on {v.start.get('device', '?')}\n", style="dim")
            if v.parent:
                t.append(f"from {v.parent}\n", style="dim")
            m = v.latest
            val_steps = v.series.get(VAL_LOSS, ([], []))[0]
            # which step the validation loss is from (evals are rarer than steps)
            val_label = f"val @{int(val_steps[-1]):,}" if val_steps else "val loss"
            rows = [("step", f"{v.step:,}/{v.max_steps:,}" if v.max_steps else f"{v.step:,}"),
                    ("loss", number(m.get(TRAIN_LOSS))), (val_label, number(m.get(VAL_LOSS))),
                    ("val bpb", number(m.get(VAL_BPB))), ("lr", number(m.get(LR), ".2e")),
                    ("grad norm", number(m.get(GRAD_NORM), ".3f")),
                    ("tokens/s", number(m.get(TOKENS_PER_S), ",.0f")), ("MFU", number(m.get(MFU), ".2%"))]
            if v.phase:
                rows.insert(1, ("stage", v.phase))
            if m.get(DATA_WAIT) is not None:  # share of step time spent waiting for batches
                rows.append(("data wait", number(m.get(DATA_WAIT), ".1%")))
            if shared := shared_cpu(m, v.cores):  # other processes share this run's cores: why it is slower
                rows += [("CPU shared", f"{shared[0]:.1f} of {v.cores} busy"), ("threads", str(shared[1]))]
            if (v.start.get("world_size") or 1) > 1:
                nodes = v.start.get("nodes") or 1
                rows.append(("ranks", str(v.start["world_size"]) + (f" on {nodes} nodes" if nodes > 1 else "")))
            recent = v.series.get(STEP_MS, ([], []))[1][-20:]
            left = eta_s(v.step, v.max_steps, m, recent) if st.status == RUNNING else None
            if left is not None:
                rows.append(("ETA", hms(left)))
            if v.wall_s:
                rows.append(("elapsed", hms(v.wall_s)))
            if v.progress and st.status == RUNNING:  # the final pass can outlast the last steps
                rows.append(("now", v.progress))
            quiet = None
            if st.status == RUNNING and v.last_time:
                age = max(0.0, clock() - v.last_time)
                rows.append(("last event", f"{hms(age)} ago"))
                if age > quiet_after_s(v.gaps):
                    quiet = age
            if v.final:
                rows += [("final loss", number(v.final.get(FINAL_LOSS))),
                         ("final bpb", number(v.final.get(FINAL_BPB)))]
                if CONVICTION_AUROC in v.final:
                    rows += [("conv. AUROC", number(v.final[CONVICTION_AUROC], ".3f")),
                             ("conv. ρ loss", number(v.final.get(CONVICTION_SPEARMAN), ".3f"))]
            for name, value in rows:
                t.append(f"{name:<11} ", style="bold")  # "conv. AUROC" is 11: a space after it
                t.append(f"{value}\n")
            if quiet is not None:
                # a stopped or hung engine looked healthy for over a minute before this
                t.append(f"no event for {hms(quiet)}: the engine may be stuck or gone (see engine.log)\n",
                         style="bold yellow")
            if v.error:
                t.append(f"error: {v.error}\n", style="red")
        self.query_one("#train-numbers", Readout).set(t)
        self.query_one("#train-system", Readout).set(system_text(data.files))

    # -- actions ------------------------------------------------------------------------
    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "train-run" and isinstance(event.value, str):
            self.show_run(event.value)

    def show_run(self, run_id: str | None) -> None:
        self.run_id = run_id
        self._drawn_events = -1
        self.poll()

    def action_running(self) -> None:
        self.show_run(None)

    def action_cycle(self, delta: int) -> None:
        ids = cycle_order(self.runs)
        if not ids:
            return
        current = self.data.view.id if self.data and self.data.view else ids[0]
        i = ids.index(current) if current in ids else 0
        self.show_run(ids[(i + delta) % len(ids)])

    def action_compare(self) -> None:
        def chosen(runs: list[str] | None) -> None:
            if runs is not None:
                self.overlay = runs
                save_overlay(self.runs_dir, runs)
                self._drawn_events = -1
                self.poll()

        shown = self._shown_run()
        offered = [r for r, _ in self.runs if r != shown and has_events(self.runs_dir / r)]
        self.app.push_screen(CompareRuns(offered, self.overlay, shown), chosen)

    # -- layout -------------------------------------------------------------------------
    def on_resize(self) -> None:
        if not self._mode_chosen:
            small = self.size.width < SMALL[0] or self.size.height < SMALL[1] - 4
            self._apply_mode("loss" if small else None)

    def action_chart_mode(self) -> None:
        """All four charts, or one large one: loss, learning rate, grad norm, tokens/s in turn."""
        self._mode_chosen = True
        self._apply_mode(CHART_MODES[(CHART_MODES.index(self.mode) + 1) % len(CHART_MODES)])

    def _apply_mode(self, mode: str | None) -> None:
        self.mode = mode
        grid = self.query_one("#charts", Grid)
        for name in CHART_MODES[1:]:
            self.query_one(f"#chart-{name}", Chart).display = mode is None or mode == name
        grid.styles.grid_size_columns = 1 if mode else 2
        grid.styles.grid_size_rows = 1 if mode else 2

    def action_smooth(self) -> None:
        self.smooth = not self.smooth
        self.notify(f"training loss {'smoothed (EMA 0.8)' if self.smooth else 'as logged'}", timeout=2)
        if self.data is not None:
            self._draw(self.data)

    def action_system(self) -> None:
        """The GPU, keep-awake and host figures in full (the panel shows one line of each)."""
        from cockpit.tui.dialogs import TextView

        files = self.data.files if self.data else {}
        self.app.push_screen(TextView("GPU, keep-awake and this machine", make=lambda: system_details(files)))

    def action_scroll_side(self, lines: int) -> None:
        side = self.query_one("#train-side", VerticalScroll)
        side.scroll_relative(y=lines, animate=False)

    def _shown_run(self) -> str | None:
        return self.data.view.id if self.data and self.data.view else None

    def action_log(self) -> None:
        """The shown run's engine.log: its tail, then what the engine appends (a failed run's
        whole traceback is at the end)."""
        from cockpit.tui.dialogs import TextView

        run = self._shown_run()
        if run is None:
            self.notify("no run shown")
            return
        self.app.push_screen(TextView(f"{run}: engine.log", path=self.runs_dir / run / "engine.log"))

    def action_config(self) -> None:
        """The shown run's resolved config with its overrides, and its differences from the runs overlaid."""
        from cockpit.tui.dialogs import TextView

        run = self._shown_run()
        if run is None:
            self.notify("no run shown")
            return
        others = list(self.overlay)
        self.app.push_screen(TextView(f"{run}: resolved config" + (f" (against {', '.join(others)})" if others else ""),
                                      make=lambda: config_text(self.runs_dir, run, others)))


def config_text(runs_dir: Path, run_id: str, others: list[str]) -> str:
    """A run's resolved config, the overrides it was created with, and where it differs from
    the runs overlaid (the keys that differ, each run's value)."""
    from cockpit.analysis.compare import differing, flatten
    from cockpit.runs import RunError, find_run, run_config
    from runspec.config.schema import to_dict

    rd = find_run(run_id, runs_dir)
    resolved = rd.path / "resolved.toml"
    out = [resolved.read_text(encoding="utf-8") if resolved.exists() else f"# {resolved} is missing"]
    overrides = rd.read_meta().overrides
    out.append("# overrides given at creation (--set): " + (", ".join(f"{k} = {v!r}" for k, v in overrides.items())
                                                             if overrides else "none"))
    for other in others:
        try:
            a, b = run_config(rd), run_config(find_run(other, runs_dir))
        except RunError as e:
            out.append(f"# {other}: {e}")
            continue
        if a is None or b is None:
            continue
        fa, fb = flatten(to_dict(a)), flatten(to_dict(b))
        keys = differing([fa, fb])
        out.append(f"# differs from {other}: " + ("nothing" if not keys else ""))
        out += [f"#   {k}: {fa.get(k, '-')!r} here, {fb.get(k, '-')!r} there" for k in keys]
    return "\n".join(out)


def system_text(files: dict) -> Text:
    """One line per GPU (or 'none'), the host's CPU and memory, keep-awake's state: at 80x24
    the explanations took three to eight lines; ``i`` shows them."""
    s = Text()
    g = files.get("gpus") or {}
    if g.get("gpus"):
        for x in g["gpus"]:
            s.append(f"GPU {x['index']} ", style="bold")
            s.append(f"{x['util']:.0f}% {x['mem_used_mb'] / 1024:.1f}/{x['mem_total_mb'] / 1024:.0f}G "
                     f"{x['temp_c']:.0f}C\n")
    else:  # without a GPU, what the run uses is this machine's CPUs and memory
        s.append("GPU ", style="bold")
        s.append("none (i: why)\n", style="dim")
        s.append("host ", style="bold")
        s.append(f"{files.get('host', '')}\n")
    ka = files.get("keepawake") or {}
    s.append("awake ", style="bold")
    s.append(ka.get("state", "unknown"), style={"active": "green"}.get(ka.get("state", ""), "dim"))
    return s


def system_details(files: dict) -> str:
    lines = ["GPUs (NVML):", *[f"  {line.strip()}" for line in gpu_lines(files.get("gpus") or {})],
             "", f"this machine: {files.get('host', '')}", "",
             f"keep-awake: {keepawake_line(files.get('keepawake') or {})}"]
    return "\n".join(lines)


def has_events(run_dir: Path) -> bool:
    try:
        return (run_dir / "events.jsonl").stat().st_size > 0
    except OSError:
        return False


def _overlay_file(runs_dir: Path) -> Path:
    return runs_dir / ".cockpit" / "tui.json"


def load_overlay(runs_dir: Path) -> list[str]:
    """The runs last overlaid in the Training tab (runs/.cockpit/tui.json)."""
    import json

    try:
        data = json.loads(_overlay_file(runs_dir).read_text(encoding="utf-8"))
        runs = data.get("overlay", [])
        return [r for r in runs if isinstance(r, str)] if isinstance(runs, list) else []
    except (OSError, ValueError, AttributeError):
        return []


LEGEND_MARK = 5  # '━━ ' before a label and two spaces after it


def fit_labels(labels: list[str], width: int) -> list[str]:
    """Legend labels that fit one line of ``width``: each shortened to an equal share (its
    start kept, '…' for the rest) rather than the line cut after the first few, which left the
    grad-norm legend at 160 columns as 'l…'."""
    if sum(len(x) + LEGEND_MARK for x in labels) <= width or not labels:
        return labels
    share = max(4, (width - LEGEND_MARK * len(labels)) // len(labels))
    short = [x for x in labels if len(x) <= share]  # labels under the share give their room to the rest
    spare = width - LEGEND_MARK * len(labels) - sum(len(x) for x in short)
    long_n = len(labels) - len(short)
    share = max(4, spare // long_n) if long_n else share
    return [x if len(x) <= share else x[: share - 1] + "…" for x in labels]


def cycle_order(runs: list[tuple[str, str]]) -> list[str]:
    """The order , and . step through: the running runs first (newest first), then the rest, so
    from one running run the next is the other running one, not the newest queued run."""
    return [r for r, s in runs if s == RUNNING] + [r for r, s in runs if s != RUNNING]


def save_overlay(runs_dir: Path, runs: list[str]) -> None:
    import json

    from runspec.fs import atomic_write

    try:
        _overlay_file(runs_dir).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(_overlay_file(runs_dir), json.dumps({"overlay": runs}))
    except OSError:
        pass  # a read-only runs directory: the choice lasts this session
