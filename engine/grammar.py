"""Grammar-constrained decoding through llguidance: a GBNF grammar (llama.cpp's format), a JSON
schema, a Lark grammar or a regular expression limits each step to the tokens that keep the
text inside the language, and the generation ends when the grammar allows nothing more.

llguidance works on token bytes, so it fits the byte tokenizer and tiktoken's BPE alike; its
mask costs microseconds per token on CPU (measured by benchmarks/serve_latency.py --grammar).
"""

from __future__ import annotations

import json

import torch

KINDS = ("gbnf", "json_schema", "lark", "regex")


class _ByteVocab:
    """What llguidance's TokenizerWrapper reads from a tokenizer: every token's bytes, the
    separator as a special token, and an encoder over bytes."""

    def __init__(self, tokenizer) -> None:
        self.eos_token_id = tokenizer.eot
        self.bos_token_id = None
        self.special_token_ids = [tokenizer.eot]
        self.tokens = [b"<|endoftext|>" if i == tokenizer.eot else tokenizer.token_bytes(i)
                       for i in range(tokenizer.vocab_size)]
        self._tokenizer = tokenizer

    def __call__(self, data: bytes) -> list[int]:
        return self._tokenizer.encode(data.decode("utf-8", errors="replace"))


def lltokenizer(tokenizer):
    """An llguidance tokenizer for one of ours (built once per served model: ~0.1 s for GPT-2)."""
    from llguidance import LLTokenizer, TokenizerWrapper

    enc = getattr(tokenizer, "_enc", None)
    if enc is not None:  # tiktoken: llguidance reads its ranks and split pattern directly
        from llguidance.tiktoken import lltokenizer_from_encoding

        return lltokenizer_from_encoding(enc)
    return LLTokenizer(TokenizerWrapper(_ByteVocab(tokenizer)))


def compile_grammar(kind: str, text, lltok) -> str:
    """The llguidance grammar for a request's ``grammar`` (GBNF or Lark), ``json_schema`` or
    regex; a grammar that does not compile is a ValueError naming the field."""
    from llguidance import LLMatcher
    from llguidance._grammar_from import grammar_from

    field = "json_schema" if kind == "json_schema" else "grammar"
    if kind == "json_schema":
        text = text if isinstance(text, str) else json.dumps(text)
    try:
        if kind == "json_schema":
            # at most one space between JSON tokens, as llama.cpp's schema grammars allow: free
            # whitespace lets a small model wander in newlines until it runs out of tokens
            grammar = LLMatcher.grammar_from_json_schema(text, defaults={"whitespace_pattern": r" ?"})
        else:
            grammar = grammar_from(kind, text)
    except (ValueError, RuntimeError, KeyError) as e:
        raise ValueError(f"{field}: {str(e).splitlines()[0]}") from None
    err = LLMatcher.validate_grammar(grammar, lltok)
    if err and not err.startswith("WARNING"):
        raise ValueError(f"{field}: {err.splitlines()[0]}")
    return grammar


class Constraint:
    """One generation's grammar state: the allowed tokens now, then the token drawn."""

    def __init__(self, lltok, grammar: str, vocab: int, device: torch.device):
        from llguidance import LLMatcher

        self.matcher = LLMatcher(lltok, grammar)
        if self.matcher.is_error():
            raise ValueError(f"grammar: {self.matcher.get_error().splitlines()[0]}")
        self.vocab, self.device = vocab, device
        self._bits = torch.arange(32, dtype=torch.int32)

    def allowed(self) -> torch.Tensor:
        """A bool vector over the model's vocabulary (ids past the tokenizer's are never allowed)."""
        words = torch.frombuffer(bytearray(self.matcher.compute_bitmask()), dtype=torch.int32)
        bits = ((words.unsqueeze(1) >> self._bits) & 1).bool().flatten()
        out = torch.zeros(self.vocab, dtype=torch.bool)
        n = min(self.vocab, bits.numel())
        out[:n] = bits[:n]
        return out.to(self.device)

    def accept(self, token: int) -> None:
        self.matcher.consume_token(token)

    @property
    def finished(self) -> bool:
        return self.matcher.is_stopped()
