"""The Compare tab: pick runs (or a whole sweep), see the comparison table `cockpit compare`
prints, an overlay of any metric, and the scaling fit of the runs picked. Reads the same run
directories as the CLI, in a worker thread; the fit runs in the background on request."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Select, SelectionList, Static

from cockpit.analysis.compare import Summaries, Summary, bands, ordered_columns, table
from cockpit.tui.pane import Pane, Readout, fill_table
from cockpit.tui.training_pane import PALETTE, Chart
from runspec.run.metrics import GRAD_NORM, LR, TOKENS_PER_S, TRAIN_LOSS, VAL_LOSS

NO_SWEEP = "(no sweep)"
# the metrics `m` cycles through first (then whatever else the runs logged)
FIRST_METRICS = [VAL_LOSS, TRAIN_LOSS, LR, GRAD_NORM, TOKENS_PER_S]


def _label(run_id: str) -> Text:
    """The run's name, then its creation stamp dimmed (the part a narrow list may cut)."""
    m = re.search(r"-(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})\d{2}$", run_id)
    if not m:
        return Text(run_id)
    return Text.assemble(run_id[: m.start()], (f" {m[2]}-{m[3]} {m[4]}:{m[5]}", "dim"))


@dataclass
class CompareData:
    runs: list[tuple[str, str]]  # (id, sweep or "") of every run with events, newest first
    sweeps: list[str]
    summaries: list[Summary] = field(default_factory=list)


class ComparePane(Pane):
    TITLE = "Compare"
    BINDINGS = [
        Binding("m", "metric", "Next metric"),
        Binding("b", "baseline", "Baseline"),
        Binding("f", "fit", "Scaling fit"),
        Binding("s", "study", "Search"),
        Binding("a", "clear", "Clear picks"),
    ]

    def __init__(self, runs_dir, **kwargs):
        super().__init__(**kwargs)
        self.runs_dir = runs_dir
        self.chosen: list[str] = []
        self.baseline: str | None = None  # a picked run: its column (its seed group) is the baseline
        self.metric = VAL_LOSS
        self.metrics: list[str] = [VAL_LOSS]
        self.fit_text = ""
        self._listed: list[str] = []
        self._sweeps: list[str] = []
        self._sweep_of: dict[str, str] = {}
        self._summaries: list[Summary] = []
        self._read = Summaries()  # a picked run is read again only when its files change
        self._syncing = False

    def compose(self):
        with Horizontal():
            with Vertical(id="cmp-left"):
                yield Select([(NO_SWEEP, NO_SWEEP)], value=NO_SWEEP, allow_blank=False, id="cmp-sweep")
                yield SelectionList[str](id="cmp-runs")
            with Vertical(id="cmp-right"):
                yield Readout(Text("pick two or more runs (space), or a sweep above", style="dim"), id="cmp-hint")
                yield DataTable(id="cmp-table", cursor_type="none", zebra_stripes=True)
                yield Chart(VAL_LOSS, legend=False, id="cmp-chart")
                with VerticalScroll(id="cmp-fit-box"):  # the fit's text is longer than 80x24 leaves
                    yield Static("", id="cmp-fit")

    def on_mount(self) -> None:
        self.query_one("#cmp-fit-box").display = False
        # the table has no cursor: focus on it took the keys from the run list (Tab, then Down and
        # space did nothing), so Tab moves only between the sweep picker and the list
        self.query_one("#cmp-table", DataTable).can_focus = False

    # -- loading ------------------------------------------------------------------------
    def load(self) -> CompareData:
        from cockpit.runs import list_runs

        runs, sweeps = [], set()
        all_runs = list_runs(self.runs_dir)
        for rd in reversed(all_runs):
            if not rd.events.exists() or rd.events.stat().st_size == 0:
                continue  # queued and never started: nothing to compare
            sweep = rd.read_meta().sweep or ""
            runs.append((rd.id, sweep))
            if sweep:
                sweeps.add(sweep)
        by_id = {rd.id: rd for rd in all_runs}
        picked = [by_id[r] for r in list(self.chosen) if r in by_id]
        self._read.keep(picked)
        summaries = [self._read.get(rd) for rd in picked]
        return CompareData(runs, sorted(sweeps, reverse=True), summaries)

    def show(self, data: CompareData) -> None:
        self._sweep_of = dict(data.runs)
        ids = [r for r, _ in data.runs]
        self._syncing = True
        try:
            if data.sweeps != self._sweeps:
                self._sweeps = data.sweeps
                sel = self.query_one("#cmp-sweep", Select)
                keep = sel.value
                sel.set_options([(NO_SWEEP, NO_SWEEP), *((s, s) for s in data.sweeps)])
                sel.value = keep if keep in data.sweeps else NO_SWEEP
            if ids != self._listed:
                self._listed = ids
                lst = self.query_one("#cmp-runs", SelectionList)
                lst.clear_options()
                lst.add_options([(_label(r), r, r in self.chosen) for r in ids])
                if ids and lst.highlighted is None:
                    lst.highlighted = 0  # space works at once on a focused list
        finally:
            self._syncing = False
        self.chosen = [r for r in self.chosen if r in self._sweep_of]
        self._summaries = [s for s in data.summaries if s.run in self.chosen]
        self._refresh_view()

    def _refresh_view(self) -> None:
        summaries = self._summaries
        hint = self.query_one("#cmp-hint", Readout)
        tbl = self.query_one("#cmp-table", DataTable)
        if len(summaries) < 2:
            hint.set(Text(f"{len(summaries)} picked: pick two or more runs (space) or a sweep", style="dim"))
            fill_table(tbl, [""], [])
            self.query_one("#cmp-chart", Chart).draw({})
            return
        baseline = self.baseline if self.baseline in {s.run for s in summaries} else None
        header, rows = table(summaries, baseline)
        cols = ordered_columns(summaries, baseline)
        hint.set(Text(f"{len(summaries)} runs in {len(cols)} column{'s' if len(cols) != 1 else ''}" + (f" · Δ against {cols[0].label}" if baseline
                                                                      else "") +
                      " · m metric · b baseline · f scaling fit · s search · a clear", style="dim"))
        # a first row in each column's line colour: the chart needs no legend over its data
        key = ["chart line", *(Text("━━━━", style=Style(color=Color.from_rgb(*PALETTE[i % len(PALETTE)]), bold=True))
                               for i in range(len(cols)))]
        fill_table(tbl, header, [("line", key), *((f"r{i}", r) for i, r in enumerate(rows))])
        names = set().union(*(s.curves for s in summaries))
        self.metrics = [m for m in FIRST_METRICS if m in names] + sorted(names - set(FIRST_METRICS))
        chart = self.query_one("#cmp-chart", Chart)
        chart.title = self.metric
        drawn = bands(summaries, self.metric, baseline=baseline)
        chart.draw({b.label: (b.x, b.mean) for b in drawn}, log_y="loss" in self.metric,
                   bands={b.label: (b.x, b.low, b.high) for b in drawn if b.low is not None})

    def action_baseline(self) -> None:
        """The highlighted run's column becomes the baseline (again: no baseline)."""
        lst = self.query_one("#cmp-runs", SelectionList)
        if lst.highlighted is None:
            return
        run = lst.get_option_at_index(lst.highlighted).value
        if run not in self.chosen:
            self.notify("pick the run first (space), then b makes its column the baseline", severity="warning")
            return
        self.baseline = None if self.baseline == run else run
        self._refresh_view()

    # -- picking ------------------------------------------------------------------------
    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        if self._syncing:
            return
        picked = set(event.selection_list.selected)
        # keep the order the runs were picked in (columns do not jump around)
        self.chosen = [r for r in self.chosen if r in picked] + [r for r in self._listed if r in picked
                                                                   and r not in self.chosen]
        self.fit_text = ""
        self.poll()

    def on_select_changed(self, event: Select.Changed) -> None:
        if self._syncing or event.select.id != "cmp-sweep" or event.value == NO_SWEEP:
            return
        self.pick([r for r, s in self._sweep_of.items() if s == event.value])

    def pick(self, runs: list[str]) -> None:
        """Check exactly these runs (a sweep, or a test)."""
        self.chosen = [r for r in self._listed if r in runs]
        lst = self.query_one("#cmp-runs", SelectionList)
        self._syncing = True
        try:
            lst.deselect_all()
            for r in self.chosen:
                lst.select(r)
        finally:
            self._syncing = False
        self.fit_text = ""
        self.poll()

    def action_clear(self) -> None:
        self.query_one("#cmp-sweep", Select).value = NO_SWEEP
        self.pick([])

    def action_metric(self) -> None:
        if not self.metrics:
            return
        i = self.metrics.index(self.metric) if self.metric in self.metrics else -1
        self.metric = self.metrics[(i + 1) % len(self.metrics)]
        self._refresh_view()

    # -- the fit ------------------------------------------------------------------------
    def _text_view(self) -> Static | None:
        """Toggle the text box in place of the chart: the box when it opens, None when it closed."""
        box, chart = self.query_one("#cmp-fit-box"), self.query_one("#cmp-chart", Chart)
        box.display, chart.display = not box.display, box.display
        return self.query_one("#cmp-fit", Static) if box.display else None

    def action_fit(self) -> None:
        """Toggle between the overlay and the scaling fit of the runs picked (computed in the
        background: the bootstrap takes a few seconds)."""
        fit = self._text_view()
        if fit is None:
            return
        if len(self.chosen) < 5:
            fit.update(Text(f"{len(self.chosen)} runs picked: a scaling fit needs 5 or more finished runs "
                            f"(several sizes at several token budgets); f: back to the chart", style="yellow"))
            return
        fit.update(Text("fitting…", style="dim"))
        runs = list(self.chosen)
        self.in_background(lambda: self._fit(runs), done=self._fitted, name="fit")

    def action_study(self) -> None:
        """Toggle between the overlay and the search the picked runs belong to (its best trial so
        far, the objective by trial, each key's importance; read in the background)."""
        text = self._text_view()
        if text is None:
            return
        names = {self._sweep_of.get(r) for r in self.chosen} - {None, ""}
        name = names.pop() if len(names) == 1 else None
        if name is None or not (self.runs_dir / ".cockpit" / "studies" / f"{name}.json").exists():
            text.update(Text("pick a search's runs (a sweep spec with method = tpe, random, grid or cmaes) to see its "
                             "best trial, objective by trial and importances; s: back to the chart", style="yellow"))
            return
        text.update(Text("reading the study…", style="dim"))
        self.in_background(lambda: self._study(name), done=self._fitted, name="study")

    def _study(self, name: str) -> str:
        from cockpit.study import describe, summary

        return describe(summary(self.runs_dir, name))

    def _fit(self, runs: list[str]) -> str:
        from cockpit.analysis import report

        return report.scaling(self.runs_dir, None, runs, bootstrap=30, charts=False).render()

    def _fitted(self, text: str) -> None:
        self.fit_text = text
        self.query_one("#cmp-fit", Static).update(Text(text + "\n(f or s: back to the chart)"))
