"""Mixing corpora by token ratio into a new corpus directory.

Each source is read in a deterministic shuffled order (its files' row groups shuffled with
the seed, then the rows inside each), and the sources are interleaved at random in
proportion to the tokens each still owes, so the output is shuffled across sources while
only one row group per source is in memory. A source stops once it has given its share: it
overshoots by less than one document, so an achieved ratio is within (largest document in
tokens) / (total tokens) of the requested one. The output is parquet (``text``, ``source``)
with meta caches already written, plus ``mix.toml`` recording what was asked and what came.
"""

from __future__ import annotations

import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import tomli_w

from cockpit.corpora.count import count_file
from cockpit.corpora.meta import Meta, token_entry, write_meta
from runspec.config.schema import tomllib
from runspec.data.corpus import corpus_files, iter_text_batches, parquet_file, stamp
from runspec.data.tokenizers import Tokenizer

ROWS_PER_FILE = 100_000
ROWS_PER_GROUP = 10_000


class MixError(ValueError):
    pass


@dataclass
class Source:
    path: str
    ratio: float
    # filled while mixing
    available_tokens: int = 0
    available_documents: int = 0
    target: int = 0
    tokens: int = 0
    documents: int = 0


@dataclass
class MixSpec:
    out: str
    sources: list[Source]
    tokens: int | None = None
    seed: int = 0
    tokenizer: str = "gpt2"
    column: str = "text"
    allow_repeat: bool = False
    force: bool = False
    origin: str = "command line"


def parse_tokens(text: str | int) -> int:
    """'200M' -> 200_000_000; also K, B (or G), and plain integers."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMbBgG]?)\s*", str(text))
        if not m:
            raise MixError(f"tokens '{text}': write a number with an optional K, M or B suffix, e.g. 200M")
        scale = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}[m.group(2).lower()]
        value = int(float(m.group(1)) * scale)
    if value <= 0:
        raise MixError(f"tokens '{text}': must be more than zero")
    return value


def parse_source(text: str) -> Source:
    path, sep, ratio = text.rpartition("=")
    if not sep or not path:
        raise MixError(f"--source '{text}': write PATH=RATIO, e.g. corpora/tinystories=0.5")
    try:
        return Source(path, float(ratio))
    except ValueError:
        raise MixError(f"--source '{text}': ratio '{ratio}' is not a number") from None


SPEC_KEYS = {"out": str, "tokenizer": str, "tokens": (str, int), "seed": int, "column": str, "allow_repeat": bool,
             "source": list}


def load_spec(path: str | Path) -> MixSpec:
    src = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MixError(f"{src}: does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise MixError(f"{src}: TOML syntax: {e}") from None
    for key, value in data.items():
        if key not in SPEC_KEYS:
            import difflib

            close = difflib.get_close_matches(key, SPEC_KEYS, n=1)
            raise MixError(f"{src}: {key}: unknown key" + (f"; did you mean '{close[0]}'?" if close else
                                                            f"; allowed: {', '.join(SPEC_KEYS)}"))
        if not isinstance(value, SPEC_KEYS[key]) or isinstance(value, bool) and SPEC_KEYS[key] is int:
            raise MixError(f"{src}: {key}: found {value!r}, of the wrong type")
    if "out" not in data or not data.get("source"):
        raise MixError(f"{src}: needs out = \"DIR\" and at least one [[source]] with path and ratio")
    sources = []
    for i, s in enumerate(data["source"]):
        if not isinstance(s, dict) or set(s) != {"path", "ratio"} or not isinstance(s["ratio"], (int, float)):
            raise MixError(f"{src}: [[source]] #{i + 1}: needs exactly path = \"...\" and ratio = <number>")
        sources.append(Source(str(s["path"]), float(s["ratio"])))
    return MixSpec(out=data["out"], sources=sources, tokens=parse_tokens(data["tokens"]) if "tokens" in data else None,
                   seed=data.get("seed", 0), tokenizer=data.get("tokenizer", "gpt2"),
                   column=data.get("column", "text"), allow_repeat=data.get("allow_repeat", False), origin=src)


def check(spec: MixSpec) -> None:
    if not spec.sources:
        raise MixError("give at least one --source PATH=RATIO")
    for s in spec.sources:
        if not s.ratio > 0:
            raise MixError(f"source {s.path}: ratio {s.ratio} must be more than zero")
    total = sum(s.ratio for s in spec.sources)
    if abs(total - 1.0) > 1e-6:
        raise MixError(f"ratios sum to {total:g}, not 1 ({' + '.join(f'{s.ratio:g}' for s in spec.sources)}); "
                       f"make them add up to 1")
    if len({Path(s.path).resolve() for s in spec.sources}) < len(spec.sources):
        raise MixError("the same source is listed twice; give each corpus once with its whole ratio")
    out = Path(spec.out)
    if out.exists() and not spec.force:
        raise MixError(f"{out}: already exists; choose another output or pass --force to replace it")
    if out.exists() and not (out.is_dir() and (out / "mix.toml").is_file()):
        # --force replaces a previous mix (its manifest proves it) and nothing else: one typo in
        # OUT must not delete a folder of notes or a text file
        what = "a directory that is not a mix (no mix.toml)" if out.is_dir() else "a file, not a mix"
        raise MixError(f"{out}: is {what}; --force only replaces an earlier mix; choose another output")
    for s in spec.sources:
        src = Path(s.path).resolve()
        if out.resolve() == src or out.resolve() in src.parents:
            raise MixError(f"{out}: the output may not be a source or contain one")
        if src.is_dir() and src in out.resolve().parents:
            raise MixError(f"{out}: is inside the source {s.path}, so the mix would become part of that corpus; "
                           f"write it elsewhere (e.g. beside the source)")


def _units(path: str) -> list[tuple[Path, int | None]]:
    """Shuffle units of a source: each parquet row group, or each text/jsonl file."""
    units: list[tuple[Path, int | None]] = []
    for f in corpus_files(path):
        if f.suffix == ".parquet":
            units += [(f, rg) for rg in range(parquet_file(f).metadata.num_row_groups)]
        else:
            units.append((f, None))
    return units


def _documents(source: Source, index: int, seed: int, column: str, tok: Tokenizer) -> Iterator[tuple[str, int]]:
    """(text, tokens incl. separator) in a deterministic shuffled order; passes repeat forever,
    each reshuffled, for sources that must repeat."""
    units = _units(source.path)
    for pass_no in range(10**9):
        rng = random.Random(f"{seed}/{index}/{pass_no}")
        order = units[:]
        rng.shuffle(order)
        for f, rg in order:
            texts = [t for batch in iter_text_batches(f, column, row_groups=None if rg is None else [rg])
                     for t in batch if t]
            rng.shuffle(texts)
            for text, n in zip(texts, tok.lengths(texts)):
                yield text, n + 1


@dataclass
class MixResult:
    out: Path
    sources: list[Source]
    tokens: int
    documents: int
    files: list[Path] = field(default_factory=list)


class _Writer:
    def __init__(self, directory: Path, tok: Tokenizer, column: str):
        self.dir, self.tok, self.column = directory, tok, column
        self.rows: list[tuple[str, str]] = []
        self.files: list[Path] = []
        self.writer = None
        self.file_rows = self.file_tokens = self.file_bytes = 0

    def add(self, text: str, source: str, tokens: int) -> None:
        self.rows.append((text, source))
        self.file_tokens += tokens
        self.file_bytes += len(text.encode("utf-8"))
        if len(self.rows) >= ROWS_PER_GROUP:
            self._flush()
        if self.file_rows >= ROWS_PER_FILE:
            self._close_file()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.rows:
            return
        table = pa.table({"text": [r[0] for r in self.rows], "source": [r[1] for r in self.rows]})
        if self.writer is None:
            path = self.dir / f"part-{len(self.files):05d}.parquet"
            self.files.append(path)
            self.writer = pq.ParquetWriter(path, table.schema, compression="zstd")
        self.writer.write_table(table)
        self.file_rows += len(self.rows)
        self.rows = []

    def _close_file(self) -> None:
        self._flush()
        if self.writer is None:
            return
        self.writer.close()
        self.writer = None
        path = self.files[-1]
        st = stamp(path)
        # the mix knows its counts: cache them so size/ls never recount the output
        write_meta(path, Meta(path.name, st.size, st.mtime_ns, self.column, self.file_rows, 0, self.file_bytes,
                              {self.tok.name: token_entry(self.file_tokens, "tokenizer")}))
        self.file_rows = self.file_tokens = self.file_bytes = 0

    def close(self) -> list[Path]:
        self._close_file()
        return self.files


def plan_mix(spec: MixSpec, tok: Tokenizer, progress: Callable[[int], None] = lambda n: None,
             on_phase: Callable[[str, int], None] = lambda phase, total: None) -> None:
    """Size the sources (from the cache when counted) and set each one's target tokens;
    nothing is written but meta caches. The TUI shows this before the user writes."""
    check(spec)
    for s in spec.sources:
        s.available_tokens = s.available_documents = 0
    on_phase("count", sum(f.stat().st_size for s in spec.sources for f in corpus_files(s.path)))
    for s in spec.sources:
        for f in corpus_files(s.path):
            fc = count_file(f, tok.name, spec.column, False, progress)
            s.available_tokens += fc.tokens or 0
            s.available_documents += fc.documents - fc.empty_documents
        if s.available_tokens == 0:
            raise MixError(f"source {s.path}: has no text in column '{spec.column}'")
    total = spec.tokens or min(int(s.available_tokens / s.ratio) for s in spec.sources)
    for s in spec.sources:
        s.target = round(s.ratio * total)
        if s.target < 1:
            raise MixError(f"source {s.path}: ratio {s.ratio:g} of {total:,} tokens is less than one token; "
                           f"raise its ratio or --tokens, or leave the source out")
    short = [s for s in spec.sources if s.target > s.available_tokens]
    if short and not spec.allow_repeat:
        s = short[0]
        raise MixError(f"source {s.path}: too small for its share: needs {s.target:,} tokens, has "
                       f"{s.available_tokens:,} ({s.target - s.available_tokens:,} missing); lower --tokens "
                       f"or pass --allow-repeat to reuse its documents")


def mix(spec: MixSpec, tok: Tokenizer, progress: Callable[[int], None] = lambda n: None,
        on_phase: Callable[[str, int], None] = lambda phase, total: None) -> MixResult:
    """Plan the shares, then write the mix."""
    plan_mix(spec, tok, progress, on_phase)
    for s in spec.sources:
        s.tokens = s.documents = 0
    out = Path(spec.out)
    staging = out.with_name(f".{out.name}.mixing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        on_phase("mix", sum(s.target for s in spec.sources))
        writer = _Writer(staging, tok, "text")
        streams = [_documents(s, i, spec.seed, spec.column, tok) for i, s in enumerate(spec.sources)]
        rng = random.Random(f"{spec.seed}/interleave")
        owing = list(spec.sources)
        while owing:
            s = rng.choices(owing, weights=[x.target - x.tokens for x in owing])[0]
            text, n = next(streams[spec.sources.index(s)])
            writer.add(text, s.path, n)
            s.tokens += n
            s.documents += 1
            progress(n)
            if s.tokens >= s.target:
                owing.remove(s)
        files = writer.close()
        result = MixResult(out, spec.sources, sum(s.tokens for s in spec.sources),
                           sum(s.documents for s in spec.sources), [out / f.name for f in files])
        (staging / "mix.toml").write_text(tomli_w.dumps(manifest(spec, result)), encoding="utf-8")
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _replace(staging: Path, out: Path) -> None:
    """Put the finished mix in place; an existing output (--force) is removed only after."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)


def manifest(spec: MixSpec, result: MixResult) -> dict:
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "spec": spec.origin,
        "tokenizer": spec.tokenizer,
        "seed": spec.seed,
        "requested_tokens": spec.tokens or 0,
        "tokens": result.tokens,
        "documents": result.documents,
        "files": [f.name for f in result.files],
        "source": [{
            "path": s.path,
            "ratio": s.ratio,
            "achieved_ratio": round(s.tokens / result.tokens, 6),
            "tokens": s.tokens,
            "documents": s.documents,
            "available_tokens": s.available_tokens,
            "repeats": round(s.tokens / s.available_tokens, 4),
        } for s in result.sources],
    }
