"""Request fields shared by the llama.cpp, OpenAI and chat routes, checked into one record.

Every field a route knows is either honoured (checked: a bad value is a 400 naming it) or
listed in ``IGNORED`` with the value at which ignoring it changes nothing: a request that sets
one of those to anything else gets a ``warnings`` entry in its reply saying so, and so does a
field no route knows. mikupad sends a dozen of the ignored ones, at their neutral values, with
every request; they pass without a word. Nothing is dropped silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


class BadRequest(ValueError):
    """A 400 with this one-line reason."""


# Sampler fields of llama.cpp (and OpenAI) that cockpit serve does not implement, each with the
# value that means "off": set to that value they change nothing, so no warning is due.
IGNORED: dict[str, object] = {
    "typical_p": 1.0, "tfs_z": 1.0, "mirostat": 0, "mirostat_tau": 5.0, "mirostat_eta": 0.1,
    "dynatemp_range": 0.0, "dynatemp_exponent": 1.0, "xtc_probability": 0.0, "xtc_threshold": 0.1,
    "dry_multiplier": 0.0, "dry_base": 1.75, "dry_allowed_length": 2, "dry_penalty_last_n": -1,
    "dry_sequence_breakers": None, "top_n_sigma": -1.0, "samplers": None, "t_max_predict_ms": 0,
    "n_indent": 0, "n_cmpl": 1, "lora": None, "image_data": None, "suffix": None, "best_of": None,
    "timings_per_token": False,
}
# a setting that only acts through another: neutral whenever that one is (mikupad sends the DRY
# and Mirostat details on every request, with the samplers themselves off)
ONLY_WITH = {"mirostat_tau": "mirostat", "mirostat_eta": "mirostat", "dynatemp_exponent": "dynatemp_range",
             "xtc_threshold": "xtc_probability", "dry_base": "dry_multiplier", "dry_allowed_length": "dry_multiplier",
             "dry_penalty_last_n": "dry_multiplier", "dry_sequence_breakers": "dry_multiplier"}
# fields that change nothing about the output here and are accepted as they are
NO_OP = {"cache_prompt", "id_slot", "slot_id", "return_tokens", "user", "api_key", "return_progress"}


@dataclass
class Generation:
    """What a completion request asks for, in llama.cpp's names (the OpenAI routes map their
    own onto these: max_tokens is n_predict, logprobs is n_probs)."""

    prompt: str | list[int] = ""  # text, or token ids
    n_predict: int = 256  # tokens to generate at most (the server's --max-tokens caps it)
    temperature: float = 0.8  # 0: greedy
    top_k: int = 40  # sample among the k most likely tokens; 0: all
    top_p: float = 0.95  # nucleus sampling: the smallest set whose probabilities reach p
    min_p: float = 0.05  # drop tokens below min_p times the most likely one's probability
    min_keep: int = 0  # top-k, top-p and min-p keep at least this many tokens
    seed: int | None = None  # the same seed and request give the same text
    stop: list[str] = field(default_factory=list)  # strings that end the generation (not included)
    stream: bool = False  # server-sent events, one per token
    n_probs: int = 0  # with each token, the n most likely tokens and their probabilities
    post_sampling_probs: bool = False  # those probabilities after top-k/top-p/min-p, as llama.cpp's option
    repeat_penalty: float = 1.0  # llama.cpp's repetition penalty over repeat_last_n tokens; 1: off
    repeat_last_n: int = 64  # 0: off; -1: the whole context
    presence_penalty: float = 0.0  # subtracted once from the logit of every token in the window
    frequency_penalty: float = 0.0  # subtracted from a token's logit for each time it is in the window
    penalize_nl: bool = True  # false: the newline token is exempt from the penalties
    logit_bias: list = field(default_factory=list)  # [[token id or text, bias or false]]
    ignore_eos: bool = False  # never end at the separator: generate n_predict tokens
    n_keep: int = 0  # prompt tokens kept at the front when the context overflows; -1: all of it
    grammar: str = ""  # GBNF (or Lark), or a JSON schema / regex per grammar_kind
    grammar_kind: str = "gbnf"  # how the engine reads grammar: gbnf (GBNF or Lark) or json_schema
    echo: bool = False  # the prompt's tokens (and logprobs) come back first
    warnings: list[str] = field(default_factory=list)  # what the request asked for and did not get

    def engine_request(self) -> dict:
        prompt = {"prompt": self.prompt} if isinstance(self.prompt, str) else {"prompt_ids": self.prompt}
        return {**prompt, "max_tokens": self.n_predict, "temperature": self.temperature, "top_k": self.top_k,
                "top_p": self.top_p, "min_p": self.min_p, "min_keep": self.min_keep, "seed": self.seed,
                "n_probs": self.n_probs, "repeat_penalty": self.repeat_penalty, "repeat_last_n": self.repeat_last_n,
                "presence_penalty": self.presence_penalty, "frequency_penalty": self.frequency_penalty,
                "penalize_nl": self.penalize_nl, "logit_bias": self.logit_bias, "ignore_eos": self.ignore_eos,
                "n_keep": self.n_keep, "grammar": self.grammar, "grammar_kind": self.grammar_kind, "echo": self.echo}


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
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v):
        raise BadRequest(f"{key} = {v!r} must be an integer")  # JSON's 1e309 is infinity: not one either
    if not lo <= v <= hi:
        # the real bounds only: a 64-bit limit in the message says nothing a person can use
        rule = f"between {lo} and {hi}" if hi < 2**62 else f"{lo} or more"
        raise BadRequest(f"{key} = {v!r} must be {rule}")
    return int(v)


def flag(body: dict, key: str, default: bool) -> bool:
    v = body.get(key, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise BadRequest(f"{key} = {v!r} must be true or false")
    return v


def _one_prompt(p, key: str) -> str | list[int]:
    if isinstance(p, str):
        return p
    if isinstance(p, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in p):
        return p
    raise BadRequest(f"{key} must be a string, a list of token ids, or a list of those")


def prompts_of(body: dict, key: str = "prompt") -> list[str | list[int]]:
    """OpenAI's prompt: a text, a list of token ids, or a list of texts / of id lists (a batch)."""
    p = body.get(key, "")
    if isinstance(p, list) and p and all(isinstance(x, (str, list)) for x in p):
        return [_one_prompt(x, key) for x in p]
    return [_one_prompt(p, key)]


def prompt_of(body: dict, key: str = "prompt") -> str | list[int]:
    """One prompt (llama.cpp's /completion takes one; a list of one is that one)."""
    got = prompts_of(body, key)
    if len(got) > 1:
        raise BadRequest(f"{key}: this route takes one prompt; send a batch to /v1/completions")
    return got[0]


def stops_of(body: dict) -> list[str]:
    s = body.get("stop")
    if s is None:
        return []
    if isinstance(s, str):
        s = [s]
    if not isinstance(s, list) or not all(isinstance(x, str) for x in s):
        raise BadRequest("stop must be a string or a list of strings")
    return [x for x in s if x][:16]


def logit_bias_of(body: dict, ban_at: float | None = None) -> list:
    """Both APIs' forms as llama.cpp's list: ``[[id or text, bias or false], ...]`` or an object
    ``{"id or text": bias}``. With ``ban_at`` (OpenAI: -100), a bias at or below it bans."""
    raw = body.get("logit_bias")
    if raw is None or raw == {} or raw == []:
        return []
    if isinstance(raw, dict):
        pairs = [[int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k, v] for k, v in raw.items()]
    elif isinstance(raw, list):
        pairs = raw
    else:
        raise BadRequest("logit_bias must be an object {token: bias} or a list of [token, bias] pairs")
    out = []
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise BadRequest(f"logit_bias entry {pair!r} must be [token id or text, bias or false]")
        key, value = pair
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise BadRequest(f"logit_bias entry {pair!r}: the token must be an id or a text")
        if value is not False and (isinstance(value, bool) or not isinstance(value, (int, float))
                                   or not math.isfinite(value)):
            raise BadRequest(f"logit_bias entry {pair!r}: the bias must be a number or false")
        if ban_at is not None and value is not False and value <= ban_at:
            value = False
        out.append([key, value])
    return out


def grammar_of(body: dict) -> tuple[str, str]:
    """(text, kind) from ``grammar`` (GBNF or Lark) or ``json_schema``; both is a 400."""
    g, schema = body.get("grammar"), body.get("json_schema")
    if g not in (None, "") and schema not in (None, {}):
        raise BadRequest("grammar and json_schema: send one of them")
    if g not in (None, ""):
        if not isinstance(g, str):
            raise BadRequest("grammar must be a GBNF grammar in a string")
        return g, "gbnf"
    if schema not in (None, {}):
        if not isinstance(schema, (dict, str)):
            raise BadRequest("json_schema must be a JSON schema object")
        import json

        return (schema if isinstance(schema, str) else json.dumps(schema)), "json_schema"
    return "", "gbnf"


def warn_unhonoured(body: dict, known: set[str]) -> list[str]:
    """A warning for each field set to something this server does not do."""
    out = []
    for key, value in body.items():
        if key in known or key in NO_OP:
            continue
        if key in IGNORED:
            parent = ONLY_WITH.get(key)
            if value in (None, "", IGNORED[key]) or (key == "best_of" and value == body.get("n", 1)) \
                    or (parent is not None and body.get(parent) in (None, IGNORED[parent])):
                continue
            out.append(f"{key} = {value!r} is not implemented by cockpit serve and was ignored")
        else:
            out.append(f"{key} is not a field cockpit serve knows; it was ignored")
    return out


SAMPLER_KEYS = {"prompt", "temperature", "top_k", "top_p", "min_p", "min_keep", "seed", "stop", "stream",
                "repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty", "penalize_nl",
                "logit_bias", "ignore_eos", "n_keep", "grammar", "json_schema"}


def common(body: dict, max_tokens: int, n_key: str, n_default: int, probs_key: str, probs_max: int,
           temperature: float, top_k: int, top_p: float, min_p: float, ban_at: float | None = None,
           prompt: str | list[int] | None = None) -> Generation:
    """The fields every route shares, under each API's names for the token count and for the
    number of alternatives per token. A count of -1 (llama.cpp) means 'as many as allowed'; a
    count above the server's --max-tokens is lowered to it, with a warning, as llama.cpp does."""
    n = integer(body, n_key, n_default, -1)
    warnings = []
    if n > max_tokens:
        warnings.append(f"{n_key} = {n} is above this server's limit; {max_tokens} tokens at most were generated "
                        f"(cockpit serve --max-tokens)")
        n = max_tokens
    seed = integer(body, "seed", -1, -1)
    grammar, kind = grammar_of(body)
    return Generation(
        prompt=prompt_of(body) if prompt is None else prompt, n_predict=max_tokens if n < 0 else n,
        temperature=number(body, "temperature", temperature, 0.0, 100.0),
        top_k=integer(body, "top_k", top_k, 0, 10**9),
        top_p=number(body, "top_p", top_p, 0.0, 1.0, lo_open=True) if body.get("top_p") != 0 else 1e-9,
        min_p=number(body, "min_p", min_p, 0.0, 0.999), min_keep=integer(body, "min_keep", 0, 0, 10**6),
        seed=None if seed < 0 else seed, stop=stops_of(body), stream=flag(body, "stream", False),
        n_probs=integer(body, probs_key, 0, 0, probs_max) if probs_key in body else 0,
        repeat_penalty=number(body, "repeat_penalty", 1.0, 0.0, 100.0, lo_open=True),
        repeat_last_n=integer(body, "repeat_last_n", 64, -1, 10**9),
        presence_penalty=number(body, "presence_penalty", 0.0, -100.0, 100.0),
        frequency_penalty=number(body, "frequency_penalty", 0.0, -100.0, 100.0),
        penalize_nl=flag(body, "penalize_nl", True), logit_bias=logit_bias_of(body, ban_at),
        ignore_eos=flag(body, "ignore_eos", False), n_keep=integer(body, "n_keep", 0, -1, 10**9),
        grammar=grammar, grammar_kind=kind, warnings=warnings)
