"""Reading corpora as documents: .txt (one document), .jsonl (a text field a line), a parquet
file, or a directory of them. Bounded memory: parquet is read in record batches. Torch-free,
so the cockpit's corpus tools use the same readers as training."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

CORPUS_SUFFIXES = (".parquet", ".jsonl", ".txt", ".zip")  # a .zip holding one file (enwik8 as it downloads)


class CorpusError(ValueError):
    """One line naming the file and what is wrong with it."""


@dataclass(frozen=True)
class FileStamp:
    path: str
    size: int
    mtime_ns: int


CONFIG_HINT = " (or --set data.path=...)"  # how a run's config names its data: commands without a config drop it


def corpus_files(path: str | Path) -> list[Path]:
    """The files a corpus path stands for, in a stable order."""
    p = Path(path)
    if not p.exists():
        raise CorpusError(f"{p}: does not exist; give a .txt, .jsonl or .parquet file, a .zip of one file, or a "
                          f"directory of them{CONFIG_HINT}")
    if p.is_file():
        if p.suffix not in CORPUS_SUFFIXES:
            raise CorpusError(f"{p}: unsupported file type '{p.suffix}'; use .txt, .jsonl, .parquet or a .zip of one file")
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in CORPUS_SUFFIXES)
    if not files:
        raise CorpusError(f"{p}: directory holds no .parquet, .jsonl or .txt files")
    return files


def preflight(path: str | Path, column: str = "text") -> None:
    """What can be checked about a corpus without reading it: it exists, holds files of a
    known type, parquet footers are readable and have the text column, a file is not empty.
    Bad data is then refused before a run directory is created; what needs the text itself
    (encoding, length) is checked when the shard is built."""
    files = corpus_files(path)
    for f in files:
        if f.suffix == ".parquet":
            names = parquet_file(f).schema_arrow.names
            if column not in names:
                raise CorpusError(f"{f}: no '{column}' column (has: {', '.join(names)}); set [data] text_column")
    for f in files:
        if f.suffix == ".zip":
            zip_member(f)
    if all(f.stat().st_size == 0 for f in files):
        raise CorpusError(f"{path}: the corpus is empty (every file has 0 bytes)")


def stamp(path: Path) -> FileStamp:
    st = path.stat()
    return FileStamp(str(path.resolve()), st.st_size, st.st_mtime_ns)


def iter_text_batches(path: Path, column: str = "text", batch_rows: int = 1024,
                      progress: Callable[[int], None] | None = None,
                      row_groups: list[int] | None = None) -> Iterator[list[str]]:
    """Documents of one file in batches. Null rows come back as empty strings, so counts
    stay aligned with the file; callers report them. ``progress`` is called with the bytes of
    the file done since its last call; ``row_groups`` restricts a parquet file to those."""
    report = progress or (lambda n: None)
    suffix = path.suffix
    if suffix in (".txt", ".zip"):
        data = read_bytes(path)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorpusError(f"{path}: not valid UTF-8 at byte {e.start}; re-encode the file as UTF-8, or read it "
                              f"as raw bytes ([data] raw_bytes = true with the bytes tokenizer)") from None
        report(path.stat().st_size)
        yield [text]
    elif suffix == ".jsonl":
        yield from _jsonl_batches(path, column, batch_rows, report)
    elif suffix == ".parquet":
        for batch in iter_parquet_batches(path, [column], batch_rows, report, row_groups):
            yield [t if t is not None else "" for t in batch[column]]
    else:
        raise CorpusError(f"{path}: unsupported file type '{suffix}'")


def zip_member(path: Path):
    """The one file inside a .zip (enwik8.zip holds enwik8); anything else is refused."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            members = [i for i in z.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as e:
        raise CorpusError(f"{path}: not a readable zip file ({e})") from None
    if len(members) != 1:
        raise CorpusError(f"{path}: a corpus zip must hold exactly one file, this one holds {len(members)}; unzip it "
                          f"and give the file or a directory")
    return members[0]


def read_bytes(path: Path) -> bytes:
    """A .txt file's bytes, or those of the one file inside a .zip."""
    if path.suffix != ".zip":
        return path.read_bytes()
    import zipfile

    member = zip_member(path)
    with zipfile.ZipFile(path) as z:
        return z.read(member)


def _jsonl_batches(path: Path, column: str, batch_rows: int, report: Callable[[int], None]) -> Iterator[list[str]]:
    batch: list[str] = []
    done = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            done += len(raw)
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise CorpusError(f"{path}:{lineno}: not a JSON object (or not UTF-8)") from None
            if not isinstance(obj, dict) or column not in obj:
                raise CorpusError(f"{path}:{lineno}: no '{column}' field; set the text column name")
            value = obj[column]
            batch.append(value if isinstance(value, str) else "")
            if len(batch) >= batch_rows:
                yield batch
                report(done)
                batch, done = [], 0
    if batch:
        yield batch
    report(done)


def parquet_file(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for truncated or foreign files
        raise CorpusError(f"{path}: not a readable parquet file ({str(e).splitlines()[0]})") from None


def iter_parquet_batches(path: Path, columns: list[str], batch_rows: int = 1024,
                         progress: Callable[[int], None] | None = None,
                         row_groups: list[int] | None = None) -> Iterator[dict[str, list]]:
    """Record batches of ``columns``, one row group at a time, so memory follows the batch
    size and not the file. ``progress`` gets each row group's compressed bytes pro rata."""
    report = progress or (lambda n: None)
    pf = parquet_file(path)
    names = pf.schema_arrow.names
    for col in columns:
        if col not in names:
            raise CorpusError(f"{path}: no '{col}' column (has: {', '.join(names)}); set the text column name")
    meta = pf.metadata
    try:
        for rg in row_groups if row_groups is not None else range(meta.num_row_groups):
            rg_meta = meta.row_group(rg)
            rows = max(1, rg_meta.num_rows)
            compressed = sum(rg_meta.column(i).total_compressed_size for i in range(rg_meta.num_columns))
            for rb in pf.iter_batches(batch_size=batch_rows, row_groups=[rg], columns=columns):
                yield {c: rb.column(i).to_pylist() for i, c in enumerate(columns)}
                report(int(compressed * rb.num_rows / rows))
    except Exception as e:
        raise CorpusError(f"{path}: parquet data cannot be read ({str(e).splitlines()[0]})") from None
