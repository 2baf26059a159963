"""Request fields shared by the llama.cpp and OpenAI routes, checked into one record.

Fields other front-ends send that we do not implement (repeat_penalty, mirostat, grammar, ...)
are accepted and ignored, as llama.cpp ignores what it does not know: mikupad sends a dozen
of them with every request. Fields we do implement are checked, and a bad one is a 400 naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


class BadRequest(ValueError):
    """A 400 with this one-line reason."""


@dataclass
class Generation:
    """What a completion request asks for, in llama.cpp's names (the OpenAI route maps its own
    onto these: max_tokens is n_predict, logprobs is n_probs)."""

    prompt: str | list[int] = ""  # text, or token ids
    n_predict: int = 256  # tokens to generate at most (the server's --max-tokens caps it)
    temperature: float = 0.8  # 0: greedy
    top_k: int = 40  # sample among the k most likely tokens; 0: all
    top_p: float = 0.95  # nucleus sampling: the smallest set whose probabilities reach p
    min_p: float = 0.05  # drop tokens below min_p times the most likely one's probability
    seed: int | None = None  # the same seed and request give the same text
    stop: list[str] = field(default_factory=list)  # strings that end the generation (not included)
    stream: bool = False  # server-sent events, one per token
    n_probs: int = 0  # with each token, the n most likely tokens and their probabilities
    post_sampling_probs: bool = False  # those probabilities after top-k/top-p/min-p, as llama.cpp's option

    def engine_request(self) -> dict:
        prompt = {"prompt": self.prompt} if isinstance(self.prompt, str) else {"prompt_ids": self.prompt}
        return {**prompt, "max_tokens": self.n_predict, "temperature": self.temperature, "top_k": self.top_k,
                "top_p": self.top_p, "min_p": self.min_p, "seed": self.seed, "n_probs": self.n_probs}


def number(body: dict, key: str, default: float, lo: float = -math.inf, hi: float = math.inf,
           lo_open: bool = False) -> float:
    v = body.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise BadRequest(f"{key} = {v!r} must be a number")
    if v < lo or v > hi or (lo_open and v == lo):
        raise BadRequest(f"{key} = {v!r} must be in {'(' if lo_open else '['}{lo:g}, {hi:g}]")
    return float(v)


def integer(body: dict, key: str, default: int, lo: int = -2**63, hi: int = 2**63 - 1) -> int:
    v = body.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
        raise BadRequest(f"{key} = {v!r} must be an integer")
    if not lo <= v <= hi:
        raise BadRequest(f"{key} = {v!r} must be between {lo} and {hi}")
    return int(v)


def flag(body: dict, key: str, default: bool) -> bool:
    v = body.get(key, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise BadRequest(f"{key} = {v!r} must be true or false")
    return v


def prompt_of(body: dict, key: str = "prompt") -> str | list[int]:
    """Text, a list of token ids, or (OpenAI) a list holding one text or one list of ids."""
    p = body.get(key, "")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], (str, list)):
        p = p[0]
    if isinstance(p, str):
        return p
    if isinstance(p, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in p):
        return p
    raise BadRequest(f"{key} must be a string or a list of token ids (one prompt per request)")


def stops_of(body: dict) -> list[str]:
    s = body.get("stop")
    if s is None:
        return []
    if isinstance(s, str):
        s = [s]
    if not isinstance(s, list) or not all(isinstance(x, str) for x in s):
        raise BadRequest("stop must be a string or a list of strings")
    return [x for x in s if x][:16]


def common(body: dict, max_tokens: int, n_key: str, n_default: int, probs_key: str, probs_max: int,
           temperature: float, top_k: int, top_p: float, min_p: float) -> Generation:
    """The fields both APIs share, under each API's names for the token count and for the
    number of alternatives per token. A count of -1 (llama.cpp) means 'as many as allowed'."""
    n = integer(body, n_key, n_default, -1)
    if n > max_tokens:
        raise BadRequest(f"{n_key} = {n} is above this server's limit of {max_tokens} (cockpit serve --max-tokens)")
    seed = integer(body, "seed", -1, -1)
    return Generation(
        prompt=prompt_of(body), n_predict=max_tokens if n < 0 else n,
        temperature=number(body, "temperature", temperature, 0.0, 100.0),
        top_k=integer(body, "top_k", top_k, 0, 10**9),
        top_p=number(body, "top_p", top_p, 0.0, 1.0, lo_open=True) if body.get("top_p") != 0 else 1e-9,
        min_p=number(body, "min_p", min_p, 0.0, 0.999),
        seed=None if seed < 0 else seed, stop=stops_of(body), stream=flag(body, "stream", False),
        n_probs=integer(body, probs_key, 0, 0, probs_max))
