"""The cockpit TUI: five tabs over the same files the CLI and the worker use.

Nothing here imports torch (a test pins it): training runs in engine subprocesses started
by the worker, completion in one ``python -m engine complete`` process. Every tab reloads
in a thread worker on the app's timer, and only while it is on screen. A tab's module is
imported and its pane mounted when the tab is first shown (the Corpora tab's tokenizers and
the Compare tab's fits load numpy and scipy: the first paint does not wait for them).
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Iterable

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, TabbedContent, TabPane

from cockpit.history import Histories
from cockpit.tui.dialogs import Help
from cockpit.tui.pane import Pane

TABS = ("corpora", "queue", "training", "completion", "compare")
# each tab's pane: (module, class, tab label); imported when the tab is first shown
PANES = {"corpora": ("cockpit.tui.corpora_pane", "CorporaPane", "1 Corpora"),
         "queue": ("cockpit.tui.queue_pane", "QueuePane", "2 Queue"),
         "training": ("cockpit.tui.training_pane", "TrainingPane", "3 Training"),
         "completion": ("cockpit.tui.completion_pane", "CompletionPane", "4 Completion"),
         "compare": ("cockpit.tui.compare_pane", "ComparePane", "5 Compare")}


def pane_class(tab: str) -> type[Pane]:
    module, name, _ = PANES[tab]
    return getattr(importlib.import_module(module), name)
FIRST_WIDGET = {"completion": "#comp-prompt", "training": "#train-run", "compare": "#cmp-runs"}  # else its table
POLL_S = {"corpora": 2.0, "queue": 1.0, "training": 0.5, "completion": 2.0, "compare": 3.0}


def default_tokenizer(runs_dir: Path) -> str:
    """The Corpora tab's first tokenizer: the newest run's (what the user trains with), else
    bytes. gpt2 was the default and cannot load offline: every row read "uncounted"."""
    from cockpit.runs import list_runs, run_config

    try:
        for rd in sorted(list_runs(runs_dir), key=lambda rd: rd.read_meta().created, reverse=True):
            cfg = run_config(rd)
            if cfg is not None:
                return cfg.data.tokenizer
    except (OSError, ValueError):  # a damaged run must not keep the TUI from opening
        pass
    return "bytes"


class CockpitApp(App):
    CSS_PATH = Path(__file__).with_name("cockpit.tcss")  # absolute: subclasses elsewhere find it too
    TITLE = "cockpit"
    AUTO_FOCUS = None  # on_mount focuses the first widget of the opening tab
    BINDINGS = [
        Binding("question_mark,f1", "help", "Help"),
        Binding("1", "tab('corpora')", "Corpora", show=False),
        Binding("2", "tab('queue')", "Queue", show=False),
        Binding("3", "tab('training')", "Training", show=False),
        Binding("4", "tab('completion')", "Completion", show=False),
        Binding("5", "tab('compare')", "Compare", show=False),
        # from inside a text field too (the completion prompt): digits there are text
        *[Binding(f"alt+{i}", f"tab('{tab}')", tab.capitalize(), show=False, priority=True)
          for i, tab in enumerate(("corpora", "queue", "training", "completion", "compare"), 1)],
        Binding("q", "quit", "Quit"),
        # on the tab bar (where Tab leads from a tab's last widget), Down goes into the tab
        Binding("down", "into_tab", "from the tab bar, into the tab", show=False),
    ]

    def __init__(self, runs_dir: Path | str = "runs", corpora_dir: Path | str = "corpora", tab: str = "queue",
                 run: str | None = None, tokenizer: str | None = None, tick_s: float = 0.25):
        super().__init__()
        self.runs_dir, self.corpora_dir = Path(runs_dir), Path(corpora_dir)
        self.initial_tab = tab if tab in TABS else "queue"
        self.initial_run = run
        self.tokenizer = tokenizer or default_tokenizer(self.runs_dir)
        self.tick_s = tick_s
        self.histories = Histories()
        self._polled: dict[str, float] = {}
        self._panes: dict[str, Pane] = {}
        self._held: list[tuple[tuple, dict]] = []  # toasts kept while a dialog is open

    def compose(self) -> ComposeResult:
        with TabbedContent(initial=self.initial_tab, id="tabs"):
            for tab in TABS:
                with TabPane(PANES[tab][2], id=tab):
                    if tab == self.initial_tab:
                        yield self._new_pane(tab)
        yield Footer()

    def _new_pane(self, tab: str) -> Pane:
        cls = pane_class(tab)
        if tab == "corpora":
            pane = cls(self.runs_dir, self.corpora_dir, self.tokenizer, id="corpora-pane")
        else:
            pane = cls(self.runs_dir, id=f"{tab}-pane")
        if tab == "training" and self.initial_run:
            pane.run_id = self.initial_run
        self._panes[tab] = pane
        return pane

    async def ensure_pane(self, tab: str) -> Pane:
        """The tab's pane, mounted (and composed) the first time it is asked for."""
        if tab not in self._panes:
            await self._tabs.get_pane(tab).mount(self._new_pane(tab))
        return self._panes[tab]

    def on_mount(self) -> None:
        # kept: App.query_one searches the screen on top, and while help or the command
        # palette is open that screen has no tabs (the timer's tick then crashed the app)
        self._tabs = self.query_one(TabbedContent)
        self.set_interval(self.tick_s, self._tick)
        self._focus_pane(self.initial_tab, now=True)
        self._tick()

    # -- panes --------------------------------------------------------------------------
    def pane(self, tab: str) -> Pane:
        # kept from mount: a tab event that arrives while the app closes must not query a DOM
        # that is being taken down
        return self._panes[tab]

    @property
    def active_tab(self) -> str:
        return self._tabs.active or self.initial_tab

    def notify(self, message, *args, **kwargs) -> None:
        """Toasts wait while a dialog is open (they stacked over it and hid its fields);
        errors are shown at once."""
        if isinstance(self.screen, ModalScreen) and kwargs.get("severity", "information") != "error":
            self._held.append(((message, *args), kwargs))
            return
        super().notify(message, *args, **kwargs)

    def _tick(self) -> None:
        if self._held and not isinstance(self.screen, ModalScreen):
            held, self._held = self._held[-3:], []  # the newest few: older news is stale by now
            for args, kwargs in held:
                super().notify(*args, **kwargs)
        tab = self.active_tab
        now = time.monotonic()
        if tab in self._panes and now - self._polled.get(tab, 0.0) >= POLL_S[tab]:  # only the visible tab reads files
            self._polled[tab] = now
            self.pane(tab).poll()
        if "completion" in self._panes:
            self.pane("completion").idle_check()

    def action_into_tab(self) -> None:
        from textual.widgets._tabbed_content import ContentTabs

        if isinstance(self.focused, ContentTabs):
            self.pane(self.active_tab).query_one(FIRST_WIDGET.get(self.active_tab, "DataTable")).focus()

    def _focus_pane(self, tab: str, now: bool = False) -> None:
        # focus inside the pane, so the footer shows the tab's keys and they work at once
        widget = self.pane(tab).query_one(FIRST_WIDGET.get(tab, "DataTable"))

        def focus() -> None:
            # only if the tab is still the one shown: TabbedContent shows the tab of whatever
            # gets focus, so a late focus into a tab just left would switch back to it; and not
            # if focus is already inside the tab (a late call must not take it from a field)
            if self.active_tab != tab:
                return
            if self.focused is not None and self.pane(tab) in self.focused.ancestors_with_self:
                return
            widget.focus()

        focus() if now else self.call_after_refresh(focus)

    async def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id
        await self.ensure_pane(tab)
        completion = self._panes.get("completion")
        if completion is not None:
            completion.on_show_tab() if tab == "completion" else completion.on_hide_tab()
        self._polled[tab] = time.monotonic()
        self.pane(tab).poll()
        self._focus_pane(tab)

    # -- actions ------------------------------------------------------------------------
    def action_tab(self, tab: str) -> None:
        if tab == self.active_tab:
            # the tab shown already: no TabActivated follows, so clearing focus here left the
            # tab's keys dead until another tab was visited; make sure focus is inside it instead
            self._focus_pane(tab, now=True)
            return
        self.set_focus(None)  # the focused widget is in the tab being left
        self._tabs.active = tab

    def watch_run(self, run_id: str | None) -> None:
        """Open a run's live view on the Training tab (its pane mounted first if need be)."""
        self.call_later(self._watch_run, run_id)

    async def _watch_run(self, run_id: str | None) -> None:
        pane = await self.ensure_pane("training")
        self.action_tab("training")
        pane.show_run(run_id)

    def action_help(self) -> None:
        sections = [("Everywhere", self._keys(self.BINDINGS) + [
            ("escape", "leave a text field (then 1-5 and q work again)"), ("ctrl+p", "command palette"),
            ("ctrl+q", "quit, also from inside a text field")])]
        for tab in TABS:
            pane = pane_class(tab)
            sections.append((f"{pane.TITLE} tab", self._keys(pane.BINDINGS)))
        from cockpit.tui.corpora_pane import MixForm
        from cockpit.tui.dialogs import TextView
        from cockpit.tui.training_pane import CompareRuns

        sections += [("Mix form (Corpora, m)", self._keys(MixForm.BINDINGS)),
                     ("Overlay picker (Training, c)", self._keys(CompareRuns.BINDINGS) + [("space", "check a run")]),
                     ("Log and config views (Training, l / o; i)", self._keys(TextView.BINDINGS))]
        sections.append(("Tables and lists", [("up/down", "move"), ("tab", "next field"),
                                              ("escape", "close a dialog")]))
        self.push_screen(Help(sections))

    @staticmethod
    def _keys(bindings) -> list[tuple[str, str]]:
        out = []
        for b in bindings:
            if isinstance(b, Binding):
                keys = ", ".join(k.replace("question_mark", "?").replace("full_stop", ".").replace("comma", ",")
                                 .replace("left_square_bracket", "[").replace("right_square_bracket", "]")
                                 for k in b.key.split(","))
                out.append((keys, b.description or b.action))
        return out

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for tab in TABS:
            yield SystemCommand(f"Go to {tab}", f"show the {tab.capitalize()} tab", lambda t=tab: self.action_tab(t))
            pane = pane_class(tab)
            for b in pane.BINDINGS:
                if isinstance(b, Binding) and b.description:
                    yield SystemCommand(f"{pane.TITLE}: {b.description}", f"key {b.key.split(',')[0]}",
                                        lambda t=tab, a=b.action: self._run_pane_action(t, a))

    def _run_pane_action(self, tab: str, action: str) -> None:
        self.call_later(self._pane_action, tab, action)

    async def _pane_action(self, tab: str, action: str) -> None:
        pane = await self.ensure_pane(tab)
        self.action_tab(tab)
        self.call_after_refresh(lambda: self.run_action(action, pane))

    def on_unmount(self) -> None:
        # the model process goes with the app (training does not: the worker owns it)
        completion = self._panes.get("completion")
        client = completion.client if completion is not None else None
        if client is not None:
            client.close()
        if completion is not None:
            completion.stop_server()  # a server started here goes with the app too


def run_tui(runs_dir: Path, corpora_dir: Path, tab: str = "queue", run: str | None = None) -> int:
    CockpitApp(runs_dir, corpora_dir, tab=tab, run=run).run()
    return 0


def open_tui(args, tab: str = "queue", run: str | None = None) -> int:
    """The TUI for the command line's --runs-dir and --corpora-dir."""
    from cockpit.corpora import corpora_root
    from cockpit.runs import runs_root

    return run_tui(runs_root(args.runs_dir), corpora_root(args.corpora_dir), tab, run)
