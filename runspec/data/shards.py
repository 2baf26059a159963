"""Token shards: a corpus tokenized once into a cached, memory-mapped file, reused by runs.

File layout (``tokens.bin``): a 64-byte header (magic, version, item size, token count,
document count, byte count) and then a flat uint16/uint32 array. Each document is preceded
by the tokenizer's separator token. The last ``val_fraction`` of the stream is the
validation split: deterministic, and for a single text file the same split as nanoGPT's.

The cache key is the tokenizer plus each file's resolved path, size and mtime (the same
staleness rule as the corpus size cache): cheap to compute at every run start, and a
touched or rewritten file gets tokenized again. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runspec.config.schema import BUILTIN_STORIES, DataConfig
from runspec.data.corpus import CorpusError, corpus_files, iter_text_batches, stamp
from runspec.data.tokenizers import Tokenizer, get_tokenizer, token_dtype
from runspec.fs import atomic_file, atomic_write

MAGIC = b"CKPTTOK1"
VERSION = 1
HEADER = struct.Struct("<8sIIQQQ")  # magic, version, itemsize, n_tokens, n_docs, n_bytes
HEADER_SIZE = 64


def cache_root() -> Path:
    return Path(os.environ.get("COCKPIT_CACHE_DIR") or Path.home() / ".cache" / "cockpit") / "shards"


@dataclass
class TokenData:
    train: np.ndarray
    val: np.ndarray
    tokenizer: Tokenizer
    n_docs: int
    n_bytes: int
    path: Path
    test: np.ndarray | None = None  # the last part of the stream, evaluated only at the end

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size


def _fingerprint(cfg: DataConfig) -> tuple[str, list]:
    if cfg.path == BUILTIN_STORIES:
        from runspec.data import stories

        # the generator's source is its content: a changed generator gets new shards
        return hashlib.sha256(Path(stories.__file__).read_bytes()).hexdigest(), [BUILTIN_STORIES]
    files = corpus_files(cfg.path)
    stamps = [stamp(f).__dict__ for f in files]
    return "", stamps


def cache_key(cfg: DataConfig) -> str:
    extra, sources = _fingerprint(cfg)
    key = {"v": VERSION, "tok": cfg.tokenizer, "col": cfg.text_column, "src": sources, "x": extra}
    if cfg.raw_bytes:  # (only then: every shard built before keeps its key)
        key["raw"] = True
    blob = json.dumps(key, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _documents(cfg: DataConfig):
    if cfg.path == BUILTIN_STORIES:
        from runspec.data.stories import generate_stories

        yield generate_stories()
        return
    for f in corpus_files(cfg.path):
        yield from iter_text_batches(f, cfg.text_column)


@contextmanager
def _shard_file(out: Path):
    """The shard's file, written beside ``out`` under a temporary name (its header left blank
    for the writer to fill) and moved into place only when the writer finishes: a failure or a
    kill never leaves a half shard where a run would read it."""
    with atomic_file(out) as f:
        f.write(b"\0" * HEADER_SIZE)
        yield f


def _write_raw_shard(cfg: DataConfig, out: Path) -> None:
    """Each file's bytes as they are, one after another, no separators: a byte-level
    benchmark's stream (enwik8: 100,000,000 bytes, 100,000,000 tokens)."""
    from runspec.data.corpus import read_bytes

    files = corpus_files(cfg.path)
    n_tokens = 0
    with _shard_file(out) as f:
        for path in files:
            if path.suffix not in (".txt", ".zip"):
                raise CorpusError(f"{path}: raw_bytes reads .txt files (or a .zip of one); this is '{path.suffix}'")
            data = read_bytes(path)
            f.write(np.frombuffer(data, dtype=np.uint8).astype(np.uint16).tobytes())
            n_tokens += len(data)
        if n_tokens == 0:
            raise CorpusError(f"{cfg.path}: the corpus is empty")
        f.seek(0)
        f.write(HEADER.pack(MAGIC, VERSION, 2, n_tokens, len(files), n_tokens))


def split_sizes(n: int, cfg: DataConfig) -> tuple[int, int, int]:
    """(train, val, test) sizes of a stream of n tokens: contiguous, in that order; sizes in
    tokens when given, otherwise fractions of the stream."""
    n_val = cfg.val_tokens or int(n * cfg.val_fraction)
    n_test = cfg.test_tokens or int(n * cfg.test_fraction)
    return n - n_val - n_test, n_val, n_test


def _write_shard(cfg: DataConfig, tok: Tokenizer, out: Path) -> None:
    if cfg.raw_bytes:
        return _write_raw_shard(cfg, out)
    dtype = token_dtype(tok.vocab_size)
    n_tokens = n_docs = n_bytes = 0
    sep = np.array([tok.eot], dtype=dtype)
    with _shard_file(out) as f:
        for batch in _documents(cfg):
            for ids in tok.encode_array(batch):
                n_docs += 1
                if len(ids) == 0:
                    continue
                f.write(sep.tobytes())
                f.write(ids.astype(dtype, copy=False).tobytes())
                n_tokens += 1 + len(ids)
            n_bytes += sum(len(t.encode("utf-8")) for t in batch)
        if n_bytes == 0:
            raise CorpusError(f"{cfg.path}: the corpus is empty (no text in column/field '{cfg.text_column}')")
        f.seek(0)
        f.write(HEADER.pack(MAGIC, VERSION, dtype.itemsize, n_tokens, n_docs, n_bytes))


def _read_shard(path: Path) -> tuple[np.ndarray, int, int]:
    with open(path, "rb") as f:
        magic, version, itemsize, n_tokens, n_docs, n_bytes = HEADER.unpack(f.read(HEADER.size))
    if magic != MAGIC or version != VERSION:
        raise CorpusError(f"{path}: not a token shard of this version; delete it to rebuild")
    dtype = np.uint16 if itemsize == 2 else np.uint32
    arr = np.memmap(path, dtype=dtype, mode="r", offset=HEADER_SIZE, shape=(n_tokens,))
    return arr, n_docs, n_bytes


def load_tokens(cfg: DataConfig, block_size: int, log=print) -> TokenData:
    """Tokenize (or reuse the cache), split, and check there is enough data for a context."""
    tok = get_tokenizer(cfg.tokenizer)
    key = cache_key(cfg)
    shard_dir = cache_root() / key
    shard = shard_dir / "tokens.bin"
    if not shard.exists():
        log(f"tokenizing {cfg.path} with {cfg.tokenizer} into {shard_dir} (once; later runs reuse it)")
        shard_dir.mkdir(parents=True, exist_ok=True)
        _write_shard(cfg, tok, shard)
        atomic_write(shard_dir / "source.json",
                     json.dumps({"path": cfg.path, "tokenizer": cfg.tokenizer, "column": cfg.text_column}))
    tokens, n_docs, n_bytes = _read_shard(shard)
    n_train, n_val, n_test = split_sizes(len(tokens), cfg)
    if n_train <= 0:
        raise CorpusError(f"{cfg.path}: {len(tokens):,} tokens cannot hold a validation split of {n_val:,} and a test "
                          f"split of {n_test:,}; lower [data] val_tokens/test_tokens (or the fractions)")
    train, val = tokens[:n_train], tokens[n_train:n_train + n_val]
    test = tokens[n_train + n_val:] if n_test else None
    splits = (("training", train), ("validation", val)) + ((("test", test),) if test is not None else ())
    for name, split in splits:
        if len(split) < block_size + 1:
            raise CorpusError(
                f"{cfg.path}: the {name} split has {len(split)} tokens, shorter than one context "
                f"(block_size {block_size} + 1); use a larger corpus or a smaller block_size"
            )
    return TokenData(train=train, val=val, tokenizer=tok, n_docs=n_docs, n_bytes=n_bytes, path=shard, test=test)
