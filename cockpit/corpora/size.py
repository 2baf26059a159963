"""Sizing corpora (files and directories, with totals) and listing what is cached."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cockpit.corpora.count import FileCount, count_file
from cockpit.corpora.meta import meta_path, read_meta
from runspec.data.corpus import CorpusError, corpus_files


@dataclass
class Sized:
    """One path given on the command line: its files' counts and the totals."""

    path: Path
    files: list[FileCount] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def total(self, attr: str) -> int | None:
        values = [getattr(f, attr) for f in self.files if not f.error]
        if attr == "tokens" and any(v is None for v in values):
            return None
        return sum(v for v in values if v is not None)


def plan(paths: list[str]) -> tuple[list[tuple[Path, list[Path]]], list[str]]:
    """Expand each path into its corpus files; a bad path is an error line, not a stop."""
    out, errors = [], []
    for p in paths:
        try:
            out.append((Path(p), corpus_files(p)))
        except CorpusError as e:
            errors.append(str(e))
    return out, errors


def size_paths(planned: list[tuple[Path, list[Path]]], tokenizer: str | None, column: str,
               use_token_count_column: bool, progress: Callable[[int], None] = lambda n: None,
               on_file: Callable[[FileCount], None] = lambda f: None) -> list[Sized]:
    results = []
    for root, files in planned:
        sized = Sized(root)
        for f in files:
            try:
                fc = count_file(f, tokenizer, column, use_token_count_column, progress)
            except CorpusError as e:
                fc = FileCount(f, error=str(e))
                sized.errors.append(str(e))
            sized.files.append(fc)
            on_file(fc)
        results.append(sized)
    return results


@dataclass
class Listed:
    name: str
    path: Path
    files: int
    counted: int = 0
    stale: int = 0
    documents: int = 0
    bytes: int = 0
    tokens: dict[str, int] = field(default_factory=dict)  # only tokenizers counted for every file

    @property
    def status(self) -> str:
        if self.counted == self.files:
            return "counted"
        parts = []
        if self.stale:
            parts.append(f"{self.stale} stale")
        if self.files - self.counted - self.stale:
            parts.append(f"{self.files - self.counted - self.stale} uncounted")
        return ", ".join(parts)


def list_corpora(root: Path, column: str = "text") -> list[Listed]:
    """Every corpus under ``root`` (each subdirectory or top-level file), from the cache only:
    nothing is opened but the meta files, so this is instant."""
    if not root.is_dir():
        raise CorpusError(f"{root}: no such directory; create it or pass a directory of corpora")
    entries = [e for e in sorted(root.iterdir()) if not e.name.startswith(".") and not e.name.endswith(".meta.json")]
    return [item for e in entries if (item := listed(e, column)) is not None]


def listed(entry: Path, column: str = "text", name: str | None = None) -> Listed | None:
    """One corpus (a file or a directory of them) from its meta caches; None if it holds none."""
    try:
        files = corpus_files(entry)
    except CorpusError:
        return None
    item = Listed(name or entry.name, entry, len(files))
    per_key: dict[str, int] = {}
    in_every_file: set[str] | None = None
    for f in files:
        meta = read_meta(f, column)
        if meta is None:
            item.stale += meta_path(f).exists()
            in_every_file = set()
            continue
        item.counted += 1
        item.documents += meta.documents
        item.bytes += meta.bytes
        for key, counts in meta.tokens.items():
            per_key[key] = per_key.get(key, 0) + int(counts["tokens"])
        keys = set(meta.tokens)
        in_every_file = keys if in_every_file is None else in_every_file & keys
    item.tokens = {k: v for k, v in per_key.items() if k in (in_every_file or set())}
    return item
