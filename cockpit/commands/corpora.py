"""``cockpit corpora size | mix | ls``: rendering and exit codes around cockpit.corpora."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from cockpit.args import seed
from cockpit.corpora import corpora_root
from cockpit.corpora.meta import TOKEN_COUNT_COLUMN
from cockpit.format import nbytes
from runspec.data.corpus import CONFIG_HINT
from runspec.data.tokenizers import BYTES_HINT, TokenizerError, check_name, get_tokenizer


def in_cli_terms(e: Exception) -> str:
    """An error from the shared data layer, with its hints in this command's flags, not config keys."""
    return str(e).replace(CONFIG_HINT, "").replace(BYTES_HINT, "pass --tokenizer bytes")


def register(sub) -> None:
    c = sub.add_parser("corpora", help="corpus sizes (cached token counts), mixing by ratio, listing")
    csub = c.add_subparsers(dest="corpora_cmd", required=True)
    s = csub.add_parser("size", help="count documents, bytes and tokens; cached in <file>.meta.json")
    s.add_argument("paths", nargs="+", metavar="PATH", help="files or directories (.txt, .jsonl, .parquet, .zip)")
    s.add_argument("--tokenizer", default="gpt2", help="bytes or a tiktoken encoding (default gpt2)")
    s.add_argument("--column", default="text", help="the text field of .jsonl and parquet files")
    s.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    s.add_argument("--use-token-count-column", action="store_true",
                   help="read the files' token_count column instead of tokenizing (fineweb-edu has one)")
    m = csub.add_parser("mix", help="mix corpora by token ratio into a new corpus directory")
    m.add_argument("out", nargs="?", help="output directory (or out = ... in --spec)")
    m.add_argument("--source", action="append", default=[], metavar="PATH=RATIO",
                   help="a corpus and its share by tokens (repeatable), e.g. --source a=0.5 --source b=0.5")
    m.add_argument("--tokens", default=None, help="total tokens, e.g. 200M (default: as many as the ratios allow)")
    m.add_argument("--seed", type=seed, default=None, help="the order documents are drawn in (the same seed gives the same mix)")
    m.add_argument("--tokenizer", default=None, help="tokenizer the ratios are measured in (default gpt2)")
    m.add_argument("--column", default=None, help="the text field of the sources (default text)")
    m.add_argument("--allow-repeat", action="store_true", help="reuse a too-small source's documents")
    m.add_argument("--force", action="store_true", help="replace an existing output directory")
    m.add_argument("--spec", default=None, help="a TOML mix spec (see examples/corpora/)")
    ls = csub.add_parser("ls", help="list corpora with their cached counts")
    ls.add_argument("dir", nargs="?", default=None, help="the corpora directory (default ./corpora)")
    ls.add_argument("--column", default="text", help="the text field of .jsonl and parquet files")
    c.set_defaults(func=main)


@contextmanager
def byte_progress(console: Console, total: int, label: str, unit_bytes: bool = True):
    cols = [TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("{task.fields[files]}"),
            DownloadColumn() if unit_bytes else TextColumn("{task.completed:,.0f}/{task.total:,.0f} tokens"),
            TransferSpeedColumn() if unit_bytes else TextColumn(""), TimeRemainingColumn()]
    with Progress(*cols, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=total, files="")
        yield bar, task


def cmd_size(args) -> int:
    from cockpit.corpora.size import plan, size_paths

    console, err = Console(), Console(stderr=True)
    try:
        check_name(args.tokenizer)  # the encoding itself loads only if a file needs counting
    except TokenizerError as e:
        print(f"error: {in_cli_terms(e)}", file=sys.stderr)
        return 2
    planned, errors = plan(args.paths)
    n_files = sum(len(files) for _, files in planned)
    done = 0
    with byte_progress(console, sum(f.stat().st_size for _, fs in planned for f in fs), "counting") as (bar, task):
        def on_file(fc):
            nonlocal done
            done += 1
            bar.update(task, files=f"{done}/{n_files} files")
            if fc.error:
                err.print(f"error: {fc.error}", markup=False, highlight=False, soft_wrap=True)

        try:
            results = size_paths(planned, args.tokenizer, args.column, args.use_token_count_column,
                                 progress=lambda n: bar.advance(task, n), on_file=on_file)
        except TokenizerError as e:  # e.g. the encoding cannot be downloaded here
            print(f"error: {in_cli_terms(e)}", file=sys.stderr)
            return 2
    for e in errors:
        err.print(f"error: {in_cli_terms(e)}", markup=False, highlight=False, soft_wrap=True)
    key = TOKEN_COUNT_COLUMN if args.use_token_count_column else args.tokenizer
    if args.json:
        print(json.dumps([{
            "path": str(r.path), "tokenizer": key, "documents": r.total("documents"),
            "empty_documents": r.total("empty_documents"), "bytes": r.total("bytes"), "tokens": r.total("tokens"),
            "files": [{"path": str(f.path), "documents": f.documents, "empty_documents": f.empty_documents,
                       "bytes": f.bytes, "tokens": f.tokens, "cached": f.cached, "error": f.error or None}
                      for f in r.files]} for r in results], indent=1))
    else:
        _size_table(console, results, key)
        if args.use_token_count_column:
            console.print(f"tokens read from the files' token_count column, not counted with {args.tokenizer}",
                          highlight=False)
    return 1 if errors or any(r.errors for r in results) else 0


def _size_table(console: Console, results, key: str) -> None:
    table = Table(box=None, header_style="bold")
    for col, justify in (("path", "left"), ("documents", "right"), ("empty", "right"), ("bytes", "right"),
                         (f"tokens ({key})", "right"), ("", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    for r in results:
        many = len(r.files) > 1 or r.path.is_dir()
        if len(r.files) <= 50:
            for f in r.files:
                name = f"  {f.path.relative_to(r.path)}" if r.path.is_dir() else str(f.path)
                if f.error:
                    table.add_row(name, "", "", "", "", "[red]error[/]")
                else:
                    table.add_row(name, f"{f.documents:,}", f"{f.empty_documents:,}", nbytes(f.bytes),
                                  f"{f.tokens:,}" if f.tokens is not None else "-", "cached" if f.cached else "counted")
        if many:
            tokens = r.total("tokens")
            table.add_row(f"[bold]{r.path}/[/] ({len(r.files)} files)", f"{r.total('documents'):,}",
                          f"{r.total('empty_documents'):,}", nbytes(r.total("bytes")),
                          f"{tokens:,}" if tokens is not None else "-", "")
    console.print(table)


def cmd_mix(args) -> int:
    from cockpit.corpora.mix import MixError, MixSpec, load_spec, mix, parse_source, parse_tokens
    from runspec.data.corpus import CorpusError

    console = Console()
    try:
        if args.spec:
            spec = load_spec(args.spec)
            if args.out:
                spec.out = args.out
            spec.sources += [parse_source(s) for s in args.source]
        else:
            if not args.out:
                raise MixError("give the output directory (cockpit corpora mix OUT --source ...) or --spec FILE")
            spec = MixSpec(out=args.out, sources=[parse_source(s) for s in args.source])
        for attr in ("seed", "tokenizer", "column"):
            if getattr(args, attr) is not None:
                setattr(spec, attr, getattr(args, attr))
        if args.tokens is not None:
            spec.tokens = parse_tokens(args.tokens)
        spec.allow_repeat = spec.allow_repeat or args.allow_repeat
        spec.force = args.force
        tok = get_tokenizer(spec.tokenizer)
        with byte_progress(console, 1, "mixing", unit_bytes=True) as (bar, task):
            def on_phase(phase: str, total: int) -> None:
                bar.update(task, description=phase, total=total, completed=0,
                           files="sizing sources" if phase == "count" else "writing")

            result = mix(spec, tok, progress=lambda n: bar.advance(task, n), on_phase=on_phase)
    except (MixError, CorpusError, TokenizerError) as e:
        print(f"error: {in_cli_terms(e)}", file=sys.stderr)
        return 2
    table = Table(box=None, header_style="bold", title=f"{result.out}: {result.tokens:,} {tok.name} tokens, "
                                                        f"{result.documents:,} documents, {len(result.files)} files")
    for col in ("source", "ratio", "achieved", "tokens", "documents", "repeats"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for s in result.sources:
        table.add_row(s.path, f"{s.ratio:g}", f"{s.tokens / result.tokens:.4f}", f"{s.tokens:,}", f"{s.documents:,}",
                      f"{s.tokens / s.available_tokens:.2f}x")
    console.print(table)
    console.print(f"manifest: {result.out / 'mix.toml'}; train on it with [data] path = \"{result.out}\"",
                  highlight=False, markup=False)
    return 0


def cmd_ls(args) -> int:
    from cockpit.corpora.size import list_corpora
    from runspec.data.corpus import CorpusError

    root = corpora_root(args.dir)
    try:
        items = list_corpora(root, args.column)
    except CorpusError as e:
        print(f"error: {in_cli_terms(e)}", file=sys.stderr)
        return 2
    console = Console()
    if not items:
        console.print(f"no corpora under {root}/ (a corpus is a .parquet/.jsonl/.txt file or a directory of them)",
                      highlight=False, markup=False)
        return 0
    keys = sorted({k for it in items for k in it.tokens})
    table = Table(box=None, header_style="bold")
    for col in ["corpus", "files", "documents", "bytes", *[f"tokens ({k})" for k in keys], "status"]:
        table.add_column(col, justify="left" if col in ("corpus", "status") else "right")
    for it in items:
        status = it.status if it.status == "counted" else f"[yellow]{it.status}[/]"
        table.add_row(it.name, str(it.files), f"{it.documents:,}" if it.counted else "-",
                      nbytes(it.bytes) if it.counted else "-",
                      *[f"{it.tokens[k]:,}" if k in it.tokens else "-" for k in keys], status)
    console.print(table)
    if any(it.status != "counted" for it in items):
        console.print(f"count the rest with: cockpit corpora size {root}/<corpus> --tokenizer NAME", highlight=False,
                      markup=False)
    return 0


def main(args) -> int:
    return {"size": cmd_size, "mix": cmd_mix, "ls": cmd_ls}[args.corpora_cmd](args)
