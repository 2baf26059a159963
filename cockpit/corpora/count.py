"""Counting one corpus file: documents, bytes, empty documents and tokens, in bounded memory.

The engine's readers bound memory (one record batch of one parquet row group at a time).
Tokenization is the cost (tiktoken's encode_ordinary_batch
over all cores; parquet decoding is 30-50x faster), so batches are large enough to keep
every core busy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cockpit.corpora.meta import TOKEN_COUNT_COLUMN, Meta, read_meta, token_entry, write_meta
from runspec.data.corpus import CorpusError, iter_parquet_batches, iter_text_batches, stamp
from runspec.data.tokenizers import get_tokenizer

BATCH_ROWS = 2048
Progress = Callable[[int], None]  # called with bytes of the file done since the last call


@dataclass
class FileCount:
    path: Path
    documents: int = 0
    empty_documents: int = 0
    bytes: int = 0
    tokens: int | None = None
    token_source: str = ""  # "tokenizer", "token_count column" or "cache"
    cached: bool = False
    error: str = ""


def count_file(path: Path, tokenizer: str | None, column: str = "text", use_token_count_column: bool = False,
               progress: Progress = lambda n: None, refresh: bool = False) -> FileCount:
    """Counts for one file, from its meta cache when current; writes the cache when it counts.
    ``tokenizer`` (a name, loaded only if a count is needed) None counts documents and bytes only."""
    key = TOKEN_COUNT_COLUMN if use_token_count_column else tokenizer
    meta = None if refresh else read_meta(path, column)
    if meta is not None and (key is None or meta.token_count(key) is not None):
        progress(meta.size)  # read_meta has just checked it against the file
        return FileCount(path, meta.documents, meta.empty_documents, meta.bytes,
                         meta.token_count(key) if key else None, "cache", cached=True)
    st = stamp(path)
    result = FileCount(path, token_source=TOKEN_COUNT_COLUMN if use_token_count_column else "tokenizer")
    tokens = 0
    if use_token_count_column:
        if path.suffix != ".parquet":
            raise CorpusError(f"{path}: --use-token-count-column needs parquet files with a token_count column")
        for batch in iter_parquet_batches(path, [column, "token_count"], BATCH_ROWS, progress):
            for text, n in zip(batch[column], batch["token_count"]):
                _tally(result, text)
                tokens += (n or 0) + (1 if text else 0)
    else:
        tok = get_tokenizer(tokenizer) if tokenizer else None
        for texts in iter_text_batches(path, column, BATCH_ROWS, progress):
            present = [t for t in texts if t]
            result.documents += len(texts)
            result.empty_documents += len(texts) - len(present)
            nbytes = sum(len(t.encode("utf-8")) for t in present)
            result.bytes += nbytes
            if tok is not None and present:
                body = nbytes if tok.name == "bytes" else sum(tok.lengths(present))
                tokens += body + len(present)  # + one separator before each document
    result.tokens = tokens if key else None
    fresh = Meta(path.name, st.size, st.mtime_ns, column, result.documents, result.empty_documents, result.bytes,
                 {key: token_entry(tokens, result.token_source)} if key else {})
    write_meta(path, fresh)
    return result


def _tally(result: FileCount, text: str | None) -> None:
    result.documents += 1
    if not text:
        result.empty_documents += 1
    else:
        result.bytes += len(text.encode("utf-8"))
