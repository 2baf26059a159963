"""Modal screens shared by the tabs: a yes/no question, a one-line prompt, the help screen."""

from __future__ import annotations

from typing import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class Confirm(ModalScreen[bool]):
    AUTO_FOCUS = "*"  # the app sets none; a dialog focuses its first field
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class Prompt(ModalScreen[str | None]):
    """Ask for one line. ``check`` (run on submit) returns an error to show, or "" to accept,
    so a bad path is answered in the dialog instead of closing it."""

    AUTO_FOCUS = "*"  # the app sets none; a dialog focuses its first field
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, placeholder: str = "", value: str = "", check: Callable[[str], str] | None = None):
        super().__init__()
        self.title_text, self.placeholder, self.value, self.check = title, placeholder, value, check

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="question")
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")
            yield Static("", id="prompt-error", classes="error")
            yield Label("enter: OK   escape: cancel", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        problem = self.check(value) if self.check else ""
        if problem:
            self.query_one("#prompt-error", Static).update(Text(problem))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Help(ModalScreen[None]):
    """Every key of every tab, generated from the bindings themselves so it cannot go stale."""

    AUTO_FOCUS = "*"  # the app sets none; a dialog focuses its first field
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]):
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("Cockpit keys", style="bold")
        text.append("   (ctrl+p: every action by name; escape closes this)\n")
        for title, keys in self.sections:
            text.append(f"\n{title}\n", style="bold underline")
            for key, description in keys:
                text.append(f"  {key:<14}", style="bold cyan")
                text.append(f"{description}\n")
        with VerticalScroll(classes="dialog help"):
            yield Static(text)

    def action_close(self) -> None:
        self.dismiss(None)


class TextView(ModalScreen[None]):
    """A long text in a scrollable log: a run's engine.log (its tail, then following what the
    engine appends) or text made by ``make`` in a thread (the resolved config and its
    differences). Files are read in worker threads, never on the UI thread."""

    AUTO_FOCUS = "Log"
    BINDINGS = [Binding("escape,q", "close", "Close"), Binding("f", "follow", "Follow on/off")]
    TAIL_BYTES = 256 * 1024

    def __init__(self, title: str, path=None, make: Callable[[], str] | None = None):
        super().__init__()
        self.title_text, self.path, self.make = title, path, make
        self.read_to = 0
        self.follow = path is not None
        self.loaded = False  # tests wait on this

    def compose(self) -> ComposeResult:
        from textual.widgets import Log

        with Vertical(classes="dialog view"):
            yield Label(self.title_text, classes="question")
            yield Log(id="view-log", highlight=False, auto_scroll=True)
            yield Label("", id="view-hint", classes="hint")

    def on_mount(self) -> None:
        self._hint()
        self.run_worker(self._first, thread=True, exit_on_error=False)
        if self.path is not None:
            self.set_interval(1.0, self._poll)

    def _hint(self) -> None:
        follow = f"f: follow {'on' if self.follow else 'off'} · " if self.path is not None else ""
        self.query_one("#view-hint", Label).update(f"{follow}arrows/pgup/pgdn scroll · escape closes")

    def _first(self) -> None:
        if self.make is not None:
            text = self.make()
        else:
            try:
                size = self.path.stat().st_size
                with open(self.path, "rb") as f:
                    f.seek(max(0, size - self.TAIL_BYTES))
                    data = f.read()
                self.read_to = size
                text = data.decode("utf-8", "replace")
                if size > self.TAIL_BYTES:  # starts mid-line: say so instead of a cut line
                    text = f"[… the first {size - self.TAIL_BYTES:,} bytes are not shown]\n" + text.split("\n", 1)[-1]
            except FileNotFoundError:
                text = f"{self.path} does not exist (yet): the engine has not written a line"
        self.app.call_from_thread(self._append, text, True)

    def _poll(self) -> None:
        if self.follow and self.loaded:
            self.run_worker(self._read_new, thread=True, group="follow", exclusive=True, exit_on_error=False)

    def _read_new(self) -> None:
        try:
            size = self.path.stat().st_size
        except OSError:
            return
        if size <= self.read_to:
            return
        with open(self.path, "rb") as f:
            f.seek(self.read_to)
            data = f.read(size - self.read_to)
        self.read_to = size
        self.app.call_from_thread(self._append, data.decode("utf-8", "replace"), False)

    def _append(self, text: str, first: bool) -> None:
        self.query_one("#view-log").write(text)
        if first:
            self.loaded = True

    def action_follow(self) -> None:
        if self.path is not None:
            self.follow = not self.follow
            self._hint()

    def action_close(self) -> None:
        self.dismiss(None)
