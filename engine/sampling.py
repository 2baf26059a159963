"""What turns one position's logits into the distribution a token is drawn from.

The order is llama.cpp's where the two overlap: logit bias, then the repetition penalties,
then the grammar's mask, then temperature (or greedy), top-k, and top-p / min-p on the
probabilities. Temperature comes before top-p and min-p here (as it always has in this
engine), so those two filter the tempered distribution.

Penalties, as llama.cpp defines them, over the last ``repeat_last_n`` tokens of the context
(prompt and generated): a token seen ``c > 0`` times has its logit divided by
``repeat_penalty`` when positive and multiplied by it when not, then lowered by
``c * frequency_penalty + presence_penalty``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import torch


@dataclass
class Sampling:
    """A generate request's sampler settings; ``check`` names the first bad one."""

    max_tokens: int = 256
    temperature: float = 0.8  # <= 0: greedy
    top_k: int = 50  # 0: no limit
    top_p: float = 1.0
    min_p: float = 0.0
    min_keep: int = 0  # top-p and min-p keep at least this many tokens
    seed: int | None = None
    n_probs: int = 0
    repeat_penalty: float = 1.0  # 1: off
    repeat_last_n: int = 64  # tokens the penalties look back over; 0: off; -1: the whole context
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalize_nl: bool = True  # false: the newline token is exempt from the penalties
    logit_bias: list = field(default_factory=list)  # [[token id or text, bias or false]], llama.cpp's form
    ignore_eos: bool = False  # the separator token is never drawn: exactly max_tokens are generated
    n_keep: int = 0  # prompt tokens kept at the front when the context overflows; -1: the whole prompt
    grammar: str = ""  # an llguidance grammar (engine.grammar compiles GBNF and JSON schemas into one)
    echo: bool = False  # score the prompt's tokens too (OpenAI's echo)

    def check(self) -> "Sampling":
        for name, ok, want in (("max_tokens", self.max_tokens >= 0, ">= 0"),
                               ("temperature", math.isfinite(self.temperature), "a finite number"),
                               ("top_k", self.top_k >= 0, ">= 0 (0: no limit)"),
                               ("top_p", 0.0 < self.top_p <= 1.0, "in (0, 1]"),
                               ("min_p", 0.0 <= self.min_p < 1.0, "in [0, 1)"),
                               ("min_keep", self.min_keep >= 0, ">= 0"),
                               ("n_probs", 0 <= self.n_probs <= 100, "in [0, 100]"),
                               ("repeat_penalty", math.isfinite(self.repeat_penalty) and self.repeat_penalty > 0,
                                "a number > 0 (1: off)"),
                               ("repeat_last_n", self.repeat_last_n >= -1, ">= -1 (0: off, -1: the whole context)"),
                               ("presence_penalty", math.isfinite(self.presence_penalty), "a finite number"),
                               ("frequency_penalty", math.isfinite(self.frequency_penalty), "a finite number"),
                               ("n_keep", self.n_keep >= -1, ">= -1 (-1: the whole prompt)")):
            if not ok:
                raise ValueError(f"{name} = {getattr(self, name)!r} must be {want}")
        if not isinstance(self.logit_bias, list):
            raise ValueError("logit_bias must be a list of [token id or text, bias or false] pairs")
        return self

    @classmethod
    def from_request(cls, req: dict) -> "Sampling":
        numbers = {"max_tokens": int, "temperature": float, "top_k": int, "top_p": float, "min_p": float,
                   "min_keep": int, "n_probs": int, "repeat_penalty": float, "repeat_last_n": int,
                   "presence_penalty": float, "frequency_penalty": float, "n_keep": int}
        values: dict = {}
        for key, kind in numbers.items():
            if req.get(key) is not None:
                v = req[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                        or (kind is int and v != int(v)):
                    raise ValueError(f"{key} = {v!r} must be {'an integer' if kind is int else 'a number'}")
                values[key] = kind(v)
        for key in ("ignore_eos", "echo", "penalize_nl"):
            if req.get(key) is not None:
                if not isinstance(req[key], bool):
                    raise ValueError(f"{key} = {req[key]!r} must be true or false")
                values[key] = req[key]
        if req.get("grammar"):
            if not isinstance(req["grammar"], str):
                raise ValueError("grammar must be a string")
            values["grammar"] = req["grammar"]
        if req.get("logit_bias") is not None:
            values["logit_bias"] = req["logit_bias"]
        seed = req.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed = {seed!r} must be an integer")
        return cls(**values, seed=seed if seed is None or seed >= 0 else None).check()

    @property
    def penalized(self) -> bool:
        return self.repeat_last_n != 0 and (self.repeat_penalty != 1.0 or self.presence_penalty != 0.0
                                            or self.frequency_penalty != 0.0)


def bias_vector(pairs: list, encode, vocab: int) -> dict[int, float]:
    """llama.cpp's logit_bias list, ``[[id or text, bias or false], ...]``, as {id: bias}: a text
    biases each of its tokens, ``false`` bans (-inf). Ids outside the vocabulary are an error."""
    out: dict[int, float] = {}
    for pair in pairs:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise ValueError(f"logit_bias entry {pair!r} must be [token id or text, bias or false]")
        key, value = pair
        if value is False:
            bias = -math.inf
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ValueError(f"logit_bias entry {pair!r}: the bias must be a number or false")
        else:
            bias = float(value)
        if isinstance(key, str):
            ids = encode(key)
        elif isinstance(key, int) and not isinstance(key, bool):
            ids = [key]
        else:
            raise ValueError(f"logit_bias entry {pair!r}: the token must be an id or a text")
        for i in ids:
            if not 0 <= i < vocab:
                raise ValueError(f"logit_bias token id {i} is not in this run's vocabulary (0..{vocab - 1})")
            out[i] = out.get(i, 0.0) + bias
    return out


class Penalties:
    """Token counts over the last ``n`` tokens, kept as the context grows (O(1) per token), and
    the penalties applied to a logit vector in one pass."""

    def __init__(self, s: Sampling, vocab: int, context: int, device: torch.device, newline: int | None = None):
        self.s = s
        self.exempt = newline if not s.penalize_nl else None
        self.n = context if s.repeat_last_n < 0 else s.repeat_last_n
        self.window: deque[int] = deque()
        self.counts = torch.zeros(vocab, device=device)

    def push(self, token: int) -> None:
        if not 0 <= token < self.counts.numel() or token == self.exempt:
            return
        self.window.append(token)
        self.counts[token] += 1
        if len(self.window) > self.n:
            self.counts[self.window.popleft()] -= 1

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        seen = self.counts > 0
        if self.s.repeat_penalty != 1.0:
            rp = self.s.repeat_penalty
            logits = torch.where(seen, torch.where(logits > 0, logits / rp, logits * rp), logits)
        if self.s.frequency_penalty or self.s.presence_penalty:
            logits = logits - self.counts * self.s.frequency_penalty - seen * self.s.presence_penalty
        return logits


def filter_probs(probs: torch.Tensor, top_p: float = 1.0, min_p: float = 0.0, min_keep: int = 0) -> torch.Tensor:
    """Nucleus and min-p filtering of a probability vector, renormalized. The most likely
    ``max(1, min_keep)`` tokens always survive, so the result is never empty."""
    keep_n = max(1, min_keep)
    if min_p > 0.0:
        kept = probs >= min_p * probs.max()
        if keep_n > 1:
            kept[torch.topk(probs, min(keep_n, probs.numel())).indices] = True
        probs = torch.where(kept, probs, torch.zeros_like(probs))
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_p, 0) - sorted_p  # mass of the tokens ranked above each one
        keep = before < top_p
        keep[:keep_n] = True
        probs = torch.zeros_like(probs).scatter(0, order, sorted_p * keep)
    return probs / probs.sum()
