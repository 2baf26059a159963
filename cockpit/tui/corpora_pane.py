"""The Corpora tab: every corpus under corpora/ and every data path the runs' configs name,
with documents, bytes and tokens from the .meta.json caches; what is uncounted or stale is
counted in a worker thread with a progress bar. A mix form previews the token counts of a
mix and writes it with the same code as ``cockpit corpora mix``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, DataTable, Input, Label, Select, Static, TextArea

from cockpit.corpora.count import count_file
from cockpit.corpora.size import Listed, list_corpora, listed
from cockpit.format import nbytes
from cockpit.runs import list_runs, run_config
from cockpit.tui.pane import NumberInput, Pane, ProgressLine, fill_table
from runspec.config.schema import BUILTIN_STORIES
from runspec.data.corpus import CorpusError, corpus_files
from runspec.data.tokenizers import TokenizerError, check_name, get_tokenizer

TOKENIZERS = ("bytes", "gpt2", "cl100k_base")


class Cancelled(Exception):
    pass


class Throttled:
    """Adds up progress from a worker thread and hands it to the UI at most every ``every``
    seconds: mixing reports every document, far too often for one UI update each."""

    def __init__(self, send, every: float = 0.1):
        self.send, self.every = send, every
        self.pending, self.last = 0, 0.0

    def __call__(self, n: int) -> None:
        self.pending += n
        if time.monotonic() - self.last >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.send(self.pending)
        self.pending, self.last = 0, time.monotonic()


def config_paths(runs_dir: Path, root: Path) -> list[Path]:
    """Data paths named by the runs' configs that live outside the corpora directory."""
    out: set[Path] = set()
    for rd in list_runs(runs_dir):
        cfg = run_config(rd)  # cached on the file's mtime: this runs on every poll
        if cfg is None:
            continue
        path = cfg.data.path
        if path == BUILTIN_STORIES:
            continue
        p = Path(path)
        if p.exists() and root.resolve() not in p.resolve().parents:
            out.add(p)
    return sorted(out)


TOTAL = "\0total"  # the totals row's key: not a path


def totals(items: list[Listed], tokenizer: str) -> list[str]:
    """Documents, bytes and tokens summed over the corpora; '≥' where some are not counted."""
    def fmt(values: list[int | None], human: bool = False) -> str:
        known = [v for v in values if v is not None]
        if not known:
            return "-"
        text = nbytes(sum(known)) if human else f"{sum(known):,}"
        return text if len(known) == len(values) else f"≥{text}"

    counted = [i.status == "counted" for i in items]
    return [fmt([i.documents if c else None for i, c in zip(items, counted)]),
            fmt([i.bytes if c else None for i, c in zip(items, counted)], human=True),
            fmt([i.tokens.get(tokenizer) for i in items])]


class CorporaPane(Pane):
    TITLE = "Corpora"
    BINDINGS = [
        Binding("space", "mark", "Mark for mix"),
        Binding("m", "mix", "Mix form"),
        Binding("c", "count", "Count"),
        Binding("x", "cancel_count", "Cancel count"),
    ]

    def __init__(self, runs_dir: Path, corpora_dir: Path, tokenizer: str = "gpt2", **kwargs):
        super().__init__(**kwargs)
        self.runs_dir, self.root, self.tokenizer = runs_dir, corpora_dir, tokenizer
        self.items: list[Listed] = []
        self.marked: list[Path] = []
        self.counting = False
        self.cancel = threading.Event()
        self.auto_counted: set[str] = set()  # tokenizers already counted automatically
        self.count_errors: dict[str, str] = {}  # tokenizer -> why it counted nothing (kept on the rows)

    def compose(self) -> ComposeResult:
        with Horizontal(id="corpora-top"):
            yield Label(f"{self.root}/", id="corpora-root")
            yield Label("tokenizer")
            names = TOKENIZERS if self.tokenizer in TOKENIZERS else (*TOKENIZERS, self.tokenizer)
            yield Select[str]([(t, t) for t in names], value=self.tokenizer, allow_blank=False,
                              id="corpora-tokenizer")
        yield DataTable(id="corpora-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="corpora-message")
        yield ProgressLine(id="corpora-progress")

    # -- data ---------------------------------------------------------------------------
    def load(self) -> tuple[list[Listed], str]:
        if not self.root.is_dir():
            items, message = [], f"{self.root}/ does not exist: put corpora there (a .parquet/.jsonl/.txt file " \
                                 f"or a directory of them), or start cockpit with --corpora-dir"
        else:
            items, message = list_corpora(self.root), ""
        for p in config_paths(self.runs_dir, self.root):
            if (item := listed(p, name=str(p))) is not None:
                items.append(item)
        return items, message

    def show(self, data: tuple[list[Listed], str]) -> None:
        items, message = data
        if message or self.tokenizer not in self.count_errors:
            self.query_one("#corpora-message", Static).update(Text(message, style="yellow"))
        key = [(i.path, i.counted, i.stale, i.tokens.get(self.tokenizer)) for i in items]
        if key != [(i.path, i.counted, i.stale, i.tokens.get(self.tokenizer)) for i in self.items] or not self.polls:
            self.items = items
            self._fill()
        if self.tokenizer not in self.auto_counted and not self.counting:
            self.auto_counted.add(self.tokenizer)  # count what is missing once per tokenizer, by itself
            if self.needs_count():
                self.action_count()

    def needs_count(self) -> list[Listed]:
        if self.tokenizer in self.count_errors:  # it cannot count: the rows say why; c tries again
            return [i for i in self.items if i.status != "counted"]
        return [i for i in self.items if i.status != "counted" or self.tokenizer not in i.tokens]

    def _fill(self) -> None:
        table = self.query_one("#corpora-table", DataTable)
        cursor = table.cursor_row
        rows = []
        why = self.count_errors.get(self.tokenizer)
        for it in self.items:
            counted = it.status == "counted"
            tokens = it.tokens.get(self.tokenizer)
            if counted and tokens is not None:
                status = "counted"
            elif why:  # the reason stays (on the row, whole below the table) after the toast has gone
                status = f"no {self.tokenizer} tokens: {why}"
            else:
                status = it.status if not counted else "no tokens yet"
            rows.append((str(it.path), ["✓" if it.path in self.marked else "", it.name, str(it.files),
                                        f"{it.documents:,}" if counted else "-", nbytes(it.bytes) if counted else "-",
                                        f"{tokens:,}" if tokens is not None else "-",
                                        Text(status, style="green" if status == "counted" else "yellow")]))
        if len(self.items) > 1:
            rows.append((TOTAL, ["", Text("total", style="bold"), str(sum(i.files for i in self.items)),
                                 *totals(self.items, self.tokenizer), ""]))
        fill_table(table, ["mix", "corpus", "files", "documents", "bytes", f"tokens ({self.tokenizer})", "status"], rows)
        if why:
            self.query_one("#corpora-message", Static).update(Text(
                f"{self.tokenizer} cannot count here: {why}. Documents and bytes were counted; c tries again.",
                style="yellow"))
        if self.items:
            table.move_cursor(row=min(cursor, len(self.items) - 1), animate=False)

    # -- counting -----------------------------------------------------------------------
    def action_count(self) -> None:
        if self.counting:
            self.notify("already counting (x cancels)")
            return
        todo = self.needs_count()
        if not todo:
            self.notify(f"every corpus is counted with {self.tokenizer}")
            return
        self.counting = True
        self.cancel.clear()
        line = self.query_one("#corpora-progress", ProgressLine)
        self.run_worker(lambda: self._count([i.path for i in todo], self.tokenizer, line), thread=True, group="count",
                        exit_on_error=False)

    def _count(self, paths: list[Path], tokenizer: str, line: ProgressLine) -> None:
        try:
            files = [f for p in paths for f in corpus_files(p)]
            total = sum(f.stat().st_size for f in files)
            self._to_ui(line.start, total)
            bar = Throttled(lambda n: self._to_ui(line.advance, n))

            def progress(n: int) -> None:
                if self.cancel.is_set():
                    raise Cancelled()  # the meta file is written only after a whole file is counted
                bar(n)

            use = tokenizer
            try:
                get_tokenizer(tokenizer)
                self.count_errors.pop(tokenizer, None)
            except TokenizerError as e:
                # documents and bytes still come from a count with bytes (it needs nothing to load)
                self.count_errors[tokenizer] = str(e).split(";")[0][:120]
                self._to_ui(self.notify, f"{e}; counting documents and bytes only", severity="warning", timeout=10)
                use = "bytes"
            for i, f in enumerate(files, 1):
                self._to_ui(line.label, f"counting {f.name} ({i}/{len(files)} files) with {use}")
                count_file(f, use, progress=progress)
            self._to_ui(self.notify, f"counted {len(files)} file(s) with {use}")
        except Cancelled:
            self._to_ui(self.notify, "counting cancelled; what was counted is kept", severity="warning")
        except (CorpusError, TokenizerError, OSError) as e:
            self._to_ui(self.notify, str(e), severity="error", timeout=10)
        finally:
            self._to_ui(self._count_done)

    def _count_done(self) -> None:
        self.counting = False
        self.query_one("#corpora-progress", ProgressLine).finish()
        self._fill()
        self.poll()

    def action_cancel_count(self) -> None:
        if self.counting:
            self.cancel.set()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "corpora-tokenizer" and isinstance(event.value, str) and event.value != self.tokenizer:
            self.tokenizer = event.value
            self._fill()
            self.poll()  # counts what this tokenizer is missing
            # back to the table: space there marks for the mix (in the dropdown it reopened it)
            self.call_after_refresh(self.query_one("#corpora-table", DataTable).focus)

    # -- mixing -------------------------------------------------------------------------
    def _cursor_path(self) -> Path | None:
        table = self.query_one("#corpora-table", DataTable)
        if not self.items or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return None if key == TOTAL else Path(key)

    def action_mark(self) -> None:
        if (p := self._cursor_path()) is None:
            return
        if p in self.marked:
            self.marked.remove(p)
        else:
            self.marked.append(p)
        self._fill()

    def action_mix(self) -> None:
        sources = self.marked or ([p] if (p := self._cursor_path()) else [])
        self.app.push_screen(MixForm(sources, self.root, self.tokenizer), lambda _: self.poll())


class MixForm(ModalScreen[None]):
    """Sources as PATH=RATIO lines (the --source syntax), output, tokens, seed, tokenizer;
    Preview sizes the sources and shows each one's share; Write makes the mix."""

    AUTO_FOCUS = "*"  # the app sets none; a dialog focuses its first field
    BINDINGS = [Binding("escape", "close", "Close"), Binding("f5", "preview", "Preview", priority=True),
                Binding("f6", "write", "Write", priority=True)]

    def __init__(self, sources: list[Path], root: Path, tokenizer: str):
        super().__init__()
        ratio = 1 / len(sources) if sources else 1
        self.sources_text = "\n".join(f"{p}={ratio:.4g}" for p in sources)
        self.root, self.tokenizer = root, tokenizer
        self.busy = False
        self.result = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog mix"):
            # short enough for 80 columns: the title and placeholders were cut there
            yield Label("Mix by tokens: PATH=RATIO a line, ratios summing to 1")
            yield TextArea(self.sources_text, id="mix-sources", show_line_numbers=False)
            with Horizontal(classes="form-row"):
                yield Label("out")
                yield Input(str(self.root / f"mix-{time.strftime('%Y%m%d-%H%M%S')}"), id="mix-out")
            with Horizontal(classes="form-row"):
                yield Label("tokens")
                yield Input("", placeholder="all / 200M", id="mix-tokens")
                yield Label("seed")
                yield NumberInput("0", id="mix-seed", type="integer")
                names = TOKENIZERS if self.tokenizer in TOKENIZERS else (*TOKENIZERS, self.tokenizer)
                yield Select[str]([(t, t) for t in names], value=self.tokenizer, allow_blank=False,
                                  id="mix-tokenizer")
            with Horizontal(classes="form-row"):
                # a source smaller than its share: an error, unless repeating its documents is fine
                yield Checkbox("allow repeat", id="mix-repeat")
                yield Button("Preview F5", id="mix-preview", variant="primary")
                yield Button("Write F6", id="mix-write", variant="success")
                yield Button("Close", id="mix-close")
            yield ProgressLine(id="mix-progress")
            with VerticalScroll(id="mix-result-box"):  # the per-source table and whole errors, scrolled
                yield Static("", id="mix-result")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        {"mix-preview": self.action_preview, "mix-write": self.action_write, "mix-close": self.action_close}[
            event.button.id]()

    def spec(self):
        from cockpit.corpora.mix import MixSpec, parse_source, parse_tokens

        lines = [ln.strip() for ln in self.query_one("#mix-sources", TextArea).text.splitlines() if ln.strip()]
        tokens = self.query_one("#mix-tokens", Input).value.strip()
        seed = self.query_one("#mix-seed", Input).value.strip() or "0"
        tokenizer = self.query_one("#mix-tokenizer", Select).value
        check_name(tokenizer)
        return MixSpec(out=self.query_one("#mix-out", Input).value.strip(), sources=[parse_source(x) for x in lines],
                       tokens=parse_tokens(tokens) if tokens else None, seed=int(seed), tokenizer=tokenizer,
                       allow_repeat=self.query_one("#mix-repeat", Checkbox).value, origin="cockpit TUI")

    def action_preview(self) -> None:
        self._start(write=False)

    def action_write(self) -> None:
        self._start(write=True)

    def _start(self, write: bool) -> None:
        from cockpit.corpora.mix import MixError

        if self.busy:
            return
        try:
            spec = self.spec()
        except (MixError, TokenizerError, ValueError) as e:
            self._show(Text(f"error: {e}", style="red"))
            return
        self.busy = True
        self._show(Text("sizing the sources ..." if not write else "writing the mix ...", style="dim"))
        line = self.query_one("#mix-progress", ProgressLine)
        self.run_worker(lambda: self._work(spec, write, line), thread=True, group="mix", exit_on_error=False)

    def _work(self, spec, write: bool, line: ProgressLine) -> None:
        from cockpit.corpora.mix import MixError, mix, plan_mix

        def call(fn, *args):
            try:
                self.app.call_from_thread(fn, *args)
            except RuntimeError:
                pass

        bar = Throttled(lambda n: call(line.advance, n))

        def on_phase(phase: str, total: int) -> None:
            bar.flush()
            call(line.start, total, "sizing the sources" if phase == "count" else "writing")

        try:
            tok = get_tokenizer(spec.tokenizer)
            if write:
                result = mix(spec, tok, progress=bar, on_phase=on_phase)
                call(self._show, self._table(spec, result.tokens, written=True))
            else:
                plan_mix(spec, tok, progress=bar, on_phase=on_phase)
                call(self._show, self._table(spec, sum(s.target for s in spec.sources), written=False))
        except (MixError, CorpusError, TokenizerError, OSError) as e:
            call(self._show, Text(f"error: {e}", style="red"))
        finally:
            call(self._done)

    def _table(self, spec, total: int, written: bool) -> Text:
        t = Text()
        head = f"wrote {spec.out}: {total:,} {spec.tokenizer} tokens\n" if written else \
            f"{spec.out} would hold {total:,} {spec.tokenizer} tokens:\n"
        t.append(head, style="bold green" if written else "bold")
        # 61 columns: the table fits the dialog at 80x24 without wrapping
        t.append(f"{'source':<24}{'ratio':>6}{'tokens':>12}{'available':>12}{'uses':>7}\n", style="bold")
        for s in spec.sources:
            n = s.tokens if written else s.target
            name = s.path if len(s.path) <= 23 else "…" + s.path[-22:]
            t.append(f"{name:<24}{s.ratio:>6.3g}{n:>12,}{s.available_tokens:>12,}"
                     f"{n / max(1, s.available_tokens):>6.2f}x\n")
        if written:
            t.append(f"manifest: {spec.out}/mix.toml; train on it with [data] path = \"{spec.out}\"", style="dim")
        return t

    def _show(self, text: Text) -> None:
        self.query_one("#mix-result", Static).update(text)

    def _done(self) -> None:
        self.busy = False
        self.query_one("#mix-progress", ProgressLine).finish()

    def action_close(self) -> None:
        if not self.busy:
            self.dismiss(None)
