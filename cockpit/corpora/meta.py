"""The ``<file>.meta.json`` cache beside each corpus file.

A meta file is trusted only when it is ours (format and version), names the same column,
and records the file's current size and mtime; otherwise it is recounted, never trusted.
Counts for several tokenizers live in one file. Writes are atomic and made under a lock
with a merge of what is on disk, so two ``size`` commands at once neither break the file nor
drop each other's tokenizer entries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from runspec import fs
from runspec.data.corpus import stamp
from runspec.data.shards import cache_root

FORMAT, VERSION = "cockpit-corpus-meta", 1
# The separator policy of the counts: one separator token before each non-empty document,
# exactly as training shards are laid out, so a count equals the shard's length.
SEPARATOR_POLICY = "eot-before-each-nonempty-document"
TOKEN_COUNT_COLUMN = "token_count column"


def meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


@dataclass
class Meta:
    file: str
    size: int
    mtime_ns: int
    column: str
    documents: int = 0
    empty_documents: int = 0
    bytes: int = 0
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> {tokens, separator, source, counted_at}

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "version": VERSION, **asdict(self)}, indent=1)

    def token_count(self, key: str) -> int | None:
        entry = self.tokens.get(key)
        return int(entry["tokens"]) if entry else None


def read_meta(path: Path, column: str) -> Meta | None:
    """The cached meta for ``path`` if it is valid and current; None otherwise."""
    try:
        raw = json.loads(meta_path(path).read_text(encoding="utf-8"))
        if raw.get("format") != FORMAT or raw.get("version") != VERSION:
            return None
        raw.pop("format"), raw.pop("version")
        meta = Meta(**raw)
        if not isinstance(meta.tokens, dict) or not all(isinstance(v.get("tokens"), int) for v in meta.tokens.values()):
            return None
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    st = stamp(path)
    if meta.size != st.size or meta.mtime_ns != st.mtime_ns or meta.column != column:
        return None
    return meta


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    # the lock lives in the cache directory, not beside the user's data
    lock_dir = cache_root().parent / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
    with fs.locked(lock_dir / key):
        yield


def write_meta(path: Path, meta: Meta) -> None:
    """Atomically write ``meta``, keeping token entries another process added meanwhile."""
    with locked(path):
        current = read_meta(path, meta.column)
        if current is not None and (current.size, current.mtime_ns) == (meta.size, meta.mtime_ns):
            meta.tokens = {**current.tokens, **meta.tokens}
        try:
            fs.atomic_write(meta_path(path), meta.to_json())
        except PermissionError:
            pass  # a read-only corpus directory: counts are still reported, just not cached


def token_entry(tokens: int, source: str) -> dict[str, Any]:
    return {"tokens": tokens, "separator": SEPARATOR_POLICY, "source": source, "counted_at": round(time.time())}
