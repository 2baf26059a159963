"""The shape every tab shares: it reloads its data from files in a thread worker when the
app's timer asks and it is on screen, and applies the result on the UI thread. The UI
thread never reads a file, starts a process or tokenizes."""

from __future__ import annotations

from typing import Any, Callable

from rich.text import Text
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Input, Label, ProgressBar
from textual.worker import get_current_worker


class Pane(Vertical):
    TITLE = ""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._loading = False
        self.polls = 0  # loads applied; tests and the benchmark wait on it

    # -- polling ------------------------------------------------------------------------
    def load(self) -> Any:
        """Runs in a worker thread: read files, build what ``show`` needs."""
        return None

    def show(self, data: Any) -> None:
        """Runs on the UI thread with what ``load`` returned."""

    def poll(self) -> None:
        if self._loading:  # the last load is still running: skip this tick rather than pile up
            return
        self._loading = True
        self.run_worker(self._load, thread=True, group="poll", exit_on_error=False)

    def _load(self) -> None:
        try:
            data = self.load()
            error = None
        except Exception as e:  # a broken file must become a message, never a dead tab
            data, error = None, e
        self._to_ui(self._loaded, data, error)

    def _loaded(self, data: Any, error: Exception | None) -> None:
        self._loading = False
        if error is not None:
            self.load_failed(error)
        else:
            self.show(data)
        self.polls += 1

    def load_failed(self, error: Exception) -> None:
        self.notify(f"{type(error).__name__}: {error}", severity="error")

    # -- background actions -------------------------------------------------------------
    def in_background(self, fn: Callable[[], Any], done: Callable[[Any], None] | None = None,
                      name: str = "action") -> None:
        """Run ``fn`` in a thread; its one-line error is a notification, its result goes to
        ``done`` on the UI thread, and the tab reloads."""

        def work() -> None:
            try:
                result = fn()
            except Exception as e:
                self._to_ui(self.notify, str(e), severity="error", timeout=8)
                return
            if done is not None:
                self._to_ui(done, result)
            self._to_ui(self.poll)

        self.run_worker(work, thread=True, group=name, exit_on_error=False)

    def _to_ui(self, fn: Callable, *args, **kwargs) -> None:
        if get_current_worker().is_cancelled:
            return
        try:
            self.app.call_from_thread(fn, *args, **kwargs)
        except RuntimeError:  # the app is shutting down
            pass


class Readout(Widget):
    """Text that changes often (live numbers): repainted only when it changes, and laid out
    again only when its line count does. A Static re-lays out the whole screen on every
    update, which at a few updates a second was most of the UI thread's time."""

    DEFAULT_CSS = "Readout { height: auto; }"

    def __init__(self, text: Text | str = "", **kwargs):
        super().__init__(**kwargs)
        self._text = Text(text) if isinstance(text, str) else text

    def set(self, text: Text | str) -> None:
        text = Text(text) if isinstance(text, str) else text
        if text == self._text:
            return
        relayout = text.plain.count("\n") != self._text.plain.count("\n") or not self._text.plain
        self._text = text
        self.refresh(layout=relayout)

    def render(self) -> Text:
        return self._text


def fill_table(table, headers: list[str], rows: list[tuple[str, list]]) -> None:
    """Replace a DataTable's columns and rows, each column as wide as its widest cell now.
    Textual's automatic widths keep the widest cell ever seen (clear() alone) or, after
    clear(columns=True) with rows added in the same tick, sometimes only the header's."""
    widths = [Text(h).cell_len if isinstance(h, str) else h.cell_len for h in headers]
    for _, cells in rows:
        for i, cell in enumerate(cells):
            widths[i] = max(widths[i], Text(cell).cell_len if isinstance(cell, str) else cell.cell_len)
    table.clear(columns=True)
    for header, width in zip(headers, widths):
        table.add_column(header, width=width)
    for key, cells in rows:
        table.add_row(*cells, key=key)


class ProgressLine(Horizontal):
    """A label and a progress bar on one line, hidden until started: the Corpora tab's count
    and the mix form both use it."""

    DEFAULT_CSS = """
    ProgressLine { height: 1; display: none; }
    ProgressLine Label { width: 1fr; padding: 0 1; }
    """

    def compose(self):
        yield Label("")
        yield ProgressBar(show_eta=True)

    def start(self, total: int, label: str = "") -> None:
        self.display = True
        self.query_one(Label).update(label)
        self.query_one(ProgressBar).update(total=max(1, total), progress=0)

    def label(self, text: str) -> None:
        self.query_one(Label).update(text)

    def advance(self, n: int) -> None:
        self.query_one(ProgressBar).advance(n)

    def finish(self) -> None:
        self.display = False


class NumberInput(Input):
    """A numeric field that says why a key was refused (Textual only rings the bell, and a
    refused letter looked like a dead field): the reason shows on its border until the next
    accepted edit."""

    def restricted(self) -> None:
        self.app.bell()
        self.border_subtitle = "whole numbers" if self.type == "integer" else "numbers only"

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input is self:
            self.border_subtitle = ""
