"""The Completion tab: choose a run and checkpoint, type a prompt, generate in text mode
(prompt dim, completion streaming after it) or conviction mode: the text as a heat map (each
token's background from red, the lowest conviction of this generation, to green, the highest)
with a cursor that inspects one token (conviction, probability, the likeliest alternatives),
or ``tok | conviction`` rows in as many columns as fit; space, newline and tab have glyphs. It talks to one long-running
``python -m engine complete`` process through CompletionClient, started on demand in a
worker thread and kept while the tab is in use."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, Select, Static, TextArea

from cockpit.completion import CompletionClient, CompletionError, token_label
from cockpit.runs import list_runs
from cockpit.serve.launcher import ServeProcess
from cockpit.tui.pane import NumberInput, Pane

IDLE_CLOSE_S = 120  # the model process is let go this long after the tab was left
FLUSH_S = 0.05  # tokens reach the screen in batches, not one UI update per token
NOT_SERVING = "ctrl+s: serve over HTTP: a page with conviction, llama.cpp and OpenAI APIs"


GLYPHS = {" ": "·", "\n": "⏎", "\t": "⇥", "\r": "␍"}  # whitespace made visible, each its own
ROW_WIDTH = 20  # one ``tok | conviction`` row and its gap, for laying rows out in columns


def heat(conviction: float, lo: float = 0.0, hi: float = 1.0) -> str:
    """Red (lo) through yellow to green (hi): relative to the range this generation produced
    (a model whose convictions all lie in 0.53-0.94 was all green on an absolute scale)."""
    c = 0.5 if hi <= lo else min(1.0, max(0.0, (conviction - lo) / (hi - lo)))
    r, g = (255, int(510 * c)) if c < 0.5 else (int(510 * (1 - c)), 255)
    return f"rgb({r},{g},60)"


def conviction_range(values: list[float]) -> tuple[float, float]:
    """The 5th-95th percentile of the convictions (the whole range below 20 tokens), so one
    outlier does not wash out the rest."""
    if not values:
        return 0.0, 1.0
    v = sorted(values)
    if len(v) < 20:
        return v[0], v[-1]
    return v[len(v) * 5 // 100], v[min(len(v) - 1, len(v) * 95 // 100)]


def visible(token: str) -> Text:
    out = Text()
    for ch in token:
        glyph = GLYPHS.get(ch)
        out.append(glyph or ch, style="grey50" if glyph else "")
    return out


def conviction_text(token: str, conviction: float, lo: float = 0.0, hi: float = 1.0) -> Text:
    """One row: the token in 8 columns with whitespace as glyphs, then the conviction."""
    row = visible(token)
    row.append(" " * max(0, 8 - row.cell_len))
    row.append("| ")
    row.append(f"{conviction:.4f}", style=f"bold {heat(conviction, lo, hi)}")
    return row


def heat_map(prompt: str, rows: list[dict], lo: float, hi: float, cursor: int | None) -> Text:
    """The prompt (dim), then the completion with each token on its conviction's colour; the
    token under the cursor reversed. A newline shows its glyph and then breaks the line."""
    out = Text(prompt, style="dim")
    for i, row in enumerate(rows):
        style = f"black on {heat(row['conviction'], lo, hi)}"
        if i == cursor:
            style += " reverse bold"
        for ch in row["token"]:
            glyph = GLYPHS.get(ch)
            out.append(glyph if glyph and ch != " " else ch, style=style)
            if ch == "\n":
                out.append("\n")
    return out


def inspect_line(row: dict, i: int, n: int) -> Text:
    """One token in detail: conviction, probability, the likeliest alternatives."""
    t = Text()
    t.append(f"token {i + 1}/{n} ", style="bold")
    t.append_text(visible(row["token"]))
    t.append(f"  conviction {row['conviction']:.4f}")
    if row.get("prob") is not None:
        t.append(f"  p {row['prob']:.3f}")
    if row.get("top"):
        t.append("  alternatives ", style="dim")
        for j, (tok, p) in enumerate(row["top"][:4]):
            if j:
                t.append(", ", style="dim")
            t.append_text(visible(tok))
            t.append(f" {p:.2f}", style="dim")
    return t


class TokenView(VerticalScroll):
    """The output area; with focus (escape from the prompt), left/right move the inspector
    over the tokens of a conviction generation and r switches heat map / rows."""

    BINDINGS = [Binding("left", "inspect(-1)", "Previous token", show=False),
                Binding("right", "inspect(1)", "Next token", show=False),
                Binding("r", "rows", "Heat map / rows", show=False)]

    def action_inspect(self, delta: int) -> None:
        self.parent_pane().inspect(delta)

    def action_rows(self) -> None:
        self.parent_pane().toggle_rows()

    def parent_pane(self) -> "CompletionPane":
        return next(a for a in self.ancestors if isinstance(a, CompletionPane))


class CompletionPane(Pane):
    TITLE = "Completion"
    BINDINGS = [
        Binding("ctrl+g", "generate('text')", "Generate text", priority=True),
        Binding("ctrl+o", "generate('conviction')", "Conviction", priority=True),
        Binding("escape", "stop", "Stop / leave prompt", priority=True),
        Binding("ctrl+s", "serve", "Serve on HTTP / stop serving", priority=True),
    ]

    def __init__(self, runs_dir: Path, **kwargs):
        super().__init__(**kwargs)
        self.runs_dir = runs_dir
        self.client: CompletionClient | None = None
        self.client_key: tuple[str, int | None] | None = None
        self.client_lock = threading.Lock()  # one generation at a time talks to the process
        self.generating = False
        self.rows: list[dict] = []  # conviction generation: token, conviction, prob, top alternatives
        self.prompt_text = ""
        self.cursor: int | None = None  # the token the inspector shows (None: follow the newest)
        self.as_rows = False  # conviction shown as rows instead of the heat map
        self.mode = "text"  # of the last generation
        self.completion = ""  # text of the last generation
        self.status = ""
        self.left_at: float | None = None
        self._runs: list[tuple[str, list[int]]] = []
        self.server: ServeProcess | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="comp-top"):
            yield Select[str]([], prompt="run", id="comp-run")
            yield Select[int]([], prompt="checkpoint (latest)", id="comp-step")
        with Horizontal(id="comp-params"):
            yield Label("temperature")
            yield NumberInput("0.8", id="comp-temperature", type="number")
            yield Label("top-k")
            yield NumberInput("50", id="comp-topk", type="integer")
            yield Label("max tokens")
            yield NumberInput("256", id="comp-max", type="integer")
        yield TextArea("", id="comp-prompt", soft_wrap=True, show_line_numbers=False)
        yield Static("ctrl+g text · ctrl+o conviction per token · esc stop, or leave the prompt",
                     id="comp-status")
        yield Static(NOT_SERVING, id="comp-serve")
        with TokenView(id="comp-output"):
            yield Static("", id="comp-text")
        yield Static("", id="comp-inspect")

    # -- runs and checkpoints (worker thread) -------------------------------------------
    def load(self) -> list[tuple[str, list[int]]]:
        return [(rd.id, steps) for rd in reversed(list_runs(self.runs_dir)) if (steps := rd.checkpoint_steps())]

    def show(self, runs: list[tuple[str, list[int]]]) -> None:
        if runs == self._runs:
            return
        self._runs = runs
        select = self.query_one("#comp-run", Select)
        current = select.value
        with select.prevent(Select.Changed):
            select.set_options([(r, r) for r, _ in runs])
            if current in {r for r, _ in runs}:
                select.value = current
            elif runs:
                select.value = runs[0][0]
        self._steps()
        if not runs:
            self._set_status(f"no run under {self.runs_dir}/ has a checkpoint yet: train one first", "yellow")

    def _steps(self) -> None:
        run = self.query_one("#comp-run", Select).value
        steps = dict(self._runs).get(run, []) if isinstance(run, str) else []
        step_select = self.query_one("#comp-step", Select)
        current = step_select.value
        with step_select.prevent(Select.Changed):
            step_select.set_options([(f"step {s}", s) for s in reversed(steps)])
            if current in steps:
                step_select.value = current

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "comp-run":
            self._steps()

    # -- generation ---------------------------------------------------------------------
    def _params(self) -> dict | None:
        try:
            t = float(self.query_one("#comp-temperature", Input).value)
            k = int(self.query_one("#comp-topk", Input).value)
            m = int(self.query_one("#comp-max", Input).value)
        except ValueError:
            self._set_status("temperature must be a number, top-k and max tokens whole numbers", "red")
            return None
        if t < 0 or k < 0 or m < 1:
            self._set_status("temperature >= 0, top-k >= 0 (0: no limit), max tokens >= 1", "red")
            return None
        return {"temperature": t, "top_k": k, "max_tokens": m}

    def action_generate(self, mode: str) -> None:
        if self.generating:
            self.notify("still generating: escape stops it", severity="warning")
            return
        chosen = self._chosen()
        params = self._params() if chosen is not None else None
        if params is None:
            return
        run, step = chosen
        if mode == "conviction" and not self._has_head(run):
            # said before a model is loaded (seconds, and GPU memory, for nothing)
            self._set_status(f"{run} was trained without [conviction]: no conviction to show; use text mode (ctrl+g)",
                             "yellow")
            return
        prompt = self.query_one("#comp-prompt", TextArea).text
        if not prompt.strip():
            # an empty prompt gives the model nothing to continue (and was often a prompt typed
            # into another field): say so where the result would appear
            self._set_status("type a prompt first (the prompt field is empty)", "yellow")
            self.query_one("#comp-prompt").focus()
            return
        self.generating = True
        self.rows, self.completion, self.cursor, self.prompt_text = [], "", None, prompt
        self._draw_output(mode, prompt)
        self.run_worker(lambda: self._generate(run, step, prompt, mode, params),
                        thread=True, group="generate", exit_on_error=False)

    def _chosen(self) -> tuple[str, int | None] | None:
        """The run and checkpoint chosen (None: the latest), or None with a word on the status line."""
        run = self.query_one("#comp-run", Select).value
        if not isinstance(run, str):
            self._set_status("choose a run with a checkpoint first", "yellow")
            return None
        step = self.query_one("#comp-step", Select).value
        return run, step if isinstance(step, int) else None

    def _has_head(self, run: str) -> bool:
        from cockpit.runs import run_config
        from runspec.run.rundir import RunDir

        cfg = run_config(RunDir(self.runs_dir / run)) if (self.runs_dir / run).is_dir() else None
        return cfg is None or cfg.conviction.enabled  # unknown: let the model say

    def _client(self, run: str, step: int | None) -> CompletionClient:
        if self.client is not None and (self.client_key != (run, step) or self.client.proc.poll() is not None):
            self.client.close()
            self.client = None
        if self.client is None:
            self._to_ui(self._set_status, f"loading {run} {'step ' + str(step) if step else '(latest)'} ...", "dim")
            self.client = CompletionClient(self.runs_dir / run, step)
            self.client_key = (run, step)
        return self.client

    def _generate(self, run: str, step: int | None, prompt: str, mode: str, params: dict) -> None:
        try:
            with self.client_lock:
                client = self._client(run, step)
                if mode == "conviction" and not client.info.get("conviction"):
                    raise CompletionError(f"{run} was trained without [conviction]; use text mode (ctrl+g)")
                self._to_ui(self._set_status, f"generating ({mode}) with {run} step {client.info.get('step')} "
                                              f"- escape stops", "green")
                pending: list[dict] = []
                flushed = time.monotonic()
                done = {}
                for msg in client.generate(prompt, mode, **params, n_probs=5 if mode == "conviction" else 0):
                    if msg["type"] == "done":
                        done = msg
                        break
                    pending.append(msg)
                    if time.monotonic() - flushed >= FLUSH_S:
                        self._to_ui(self._append, pending, mode, prompt)
                        pending, flushed = [], time.monotonic()
                self._to_ui(self._append, pending, mode, prompt)
                why = {"cancelled": "stopped", "eot": "end of text", "length": "max tokens"}.get(done.get("reason"), "done")
                speed = f", {done['tokens_per_s']:.0f} tok/s" if done.get("tokens_per_s") else ""
                self._to_ui(self._set_status, f"{why}: {done.get('tokens', 0)} tokens{speed}   "
                                              f"ctrl+g text, ctrl+o conviction", "")
        except (CompletionError, OSError, ValueError) as e:
            self._to_ui(self._set_status, f"error: {e}", "red")
        finally:
            self._to_ui(self._finished)

    def _finished(self) -> None:
        self.generating = False

    def _append(self, msgs: list[dict], mode: str, prompt: str) -> None:
        for msg in msgs:
            if mode == "conviction":
                self.rows.append({"token": token_label(msg), "conviction": float(msg.get("conviction") or 0.0),
                                  "prob": msg.get("prob"),
                                  "top": [(token_label(t), float(t.get("prob", 0.0))) for t in msg.get("top") or []]})
            else:
                self.completion += msg["token"]
        self._draw_output(mode, prompt)

    def _draw_output(self, mode: str, prompt: str) -> None:
        self.mode = mode
        inspector = self.query_one("#comp-inspect", Static)
        if mode == "conviction":
            lo, hi = conviction_range([r["conviction"] for r in self.rows])
            cursor = self.cursor if self.cursor is not None else (len(self.rows) - 1 if self.rows else None)
            if self.as_rows:
                out = self._rows_text(lo, hi)
            else:
                out = heat_map(prompt, self.rows, lo, hi, cursor)
            line = inspect_line(self.rows[cursor], cursor, len(self.rows)) if cursor is not None else Text()
            if self.rows:
                line.append(f"\nred {lo:.3f} → green {hi:.3f} (this text) · esc, ←/→: inspect · r: rows",
                            style="dim")
            inspector.update(line)
            inspector.display = True
        else:
            out = Text.assemble((prompt, "dim"), (self.completion, "bold"))
            inspector.display = False
        self.query_one("#comp-text", Static).update(out)
        if self.cursor is None:  # following the newest token: after layout, or it stops at the old end
            self.call_after_refresh(self.query_one("#comp-output", VerticalScroll).scroll_end, animate=False)

    def _rows_text(self, lo: float, hi: float) -> Text:
        """``tok | conviction`` rows in as many columns as the width holds, in reading order."""
        width = max(ROW_WIDTH, self.query_one("#comp-output").size.width - 2)
        columns = max(1, width // ROW_WIDTH)
        out = Text(self.prompt_text.replace("\n", " ⏎ ") + "\n", style="dim")
        for i, row in enumerate(self.rows):
            cell = conviction_text(row["token"], row["conviction"], lo, hi)
            if i == self.cursor:
                cell.stylize("reverse")
            cell.append(" " * max(1, ROW_WIDTH - cell.cell_len))
            out.append_text(cell)
            if (i + 1) % columns == 0:
                out.append("\n")
        return out

    def inspect(self, delta: int) -> None:
        if getattr(self, "mode", "") != "conviction" or not self.rows:
            return
        current = self.cursor if self.cursor is not None else len(self.rows) - 1
        self.cursor = max(0, min(len(self.rows) - 1, current + delta))
        self._draw_output("conviction", self.prompt_text)

    def toggle_rows(self) -> None:
        self.as_rows = not self.as_rows
        if getattr(self, "mode", "") == "conviction":
            self._draw_output("conviction", self.prompt_text)

    def _set_status(self, text: str, style: str) -> None:
        self.status = text
        self.query_one("#comp-status", Static).update(Text(text, style=style))

    def action_stop(self) -> None:
        for select in self.query(Select):
            if select.expanded:
                # escape in an open dropdown only closes it (it also left the field, and what was
                # typed next landed elsewhere)
                select.expanded = False
                select.focus()
                return
        if not self.generating or self.client is None:
            # nothing to stop: leave the prompt, so the tab keys (1-4, q) work again
            self.query_one("#comp-output").focus()
            return
        client = self.client
        self.run_worker(client.cancel, thread=True, group="cancel", exit_on_error=False)

    # -- cockpit serve ------------------------------------------------------------------
    def action_serve(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            self.query_one("#comp-serve", Static).update(Text("stopping the server ...", style="dim"))
            self.run_worker(lambda: (server.stop(), self._to_ui(self._serve_line, NOT_SERVING, "")),
                            thread=True, group="serve", exit_on_error=False)
            return
        chosen = self._chosen()
        if chosen is None:
            return
        run, step = chosen
        server = self.server = ServeProcess(self.runs_dir, run, step)
        self._serve_line(f"starting cockpit serve {run} ...", "dim")
        self.run_worker(lambda: self._await_server(server), thread=True, group="serve", exit_on_error=False)

    def _await_server(self, server: ServeProcess) -> None:
        server.ready.wait()
        if server is not self.server:
            return
        if server.url:
            self._to_ui(self._serve_line, f"serving {server.run} at {server.url}  (ctrl+s stops)", "bold green")
        else:
            self.server = None
            self._to_ui(self._serve_line, f"cockpit serve failed: {server.error}", "red")

    def _serve_line(self, text: str, style: str) -> None:
        self.query_one("#comp-serve", Static).update(Text(text, style=style))

    def stop_server(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop()

    # -- process lifetime ---------------------------------------------------------------
    def on_hide_tab(self) -> None:
        # called on every switch between the other tabs too: only the first one after leaving
        # this tab starts the clock (resetting it kept the model alive past IDLE_CLOSE_S)
        if self.left_at is None:
            self.left_at = time.monotonic()

    def on_show_tab(self) -> None:
        self.left_at = None

    def idle_check(self) -> None:
        """Let the model process go once the tab has been left for a while."""
        if self.client is not None and self.left_at is not None and not self.generating and \
                time.monotonic() - self.left_at > IDLE_CLOSE_S:
            self.close_client()

    def close_client(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            self.run_worker(client.close, thread=True, group="close", exit_on_error=False)
