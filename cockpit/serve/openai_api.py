"""OpenAI's shapes: legacy ``POST /v1/completions`` and ``POST /v1/chat/completions``.

A batch of prompts and ``n`` choices each are generated one after another (choice ``index`` =
prompt * n + j; with a seed, choice j uses seed + j so that the choices differ). ``logprobs: n``
gives the classic {tokens, token_logprobs, top_logprobs, text_offset} block (``logprobs: 0``:
the sampled token's alone), chat's ``logprobs``/``top_logprobs`` the chat block; each token's
conviction rides along as ``conviction`` in stream chunks and as ``convictions`` in a whole
response, on both routes."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field, replace

from cockpit.serve.chat import Template
from cockpit.serve.params import (
    SAMPLER_KEYS,
    BadRequest,
    Generation,
    common,
    flag,
    integer,
    prompts_of,
    warn_unhonoured,
)

FINISH = {"eot": "stop", "word": "stop", "length": "length", "cancelled": "stop"}
MAX_CHOICES = 64  # prompts x n in one request
COMPLETION_KEYS = SAMPLER_KEYS | {"model", "max_tokens", "n", "echo", "logprobs", "best_of", "stream_options"}
CHAT_KEYS = (SAMPLER_KEYS - {"prompt"}) | {"model", "messages", "max_tokens", "max_completion_tokens", "n",
                                           "logprobs", "top_logprobs", "response_format", "stream_options"}


@dataclass
class Request:
    choices: list[Generation]  # one per choice, in index order
    logprobs: int | None = None  # alternatives per token to return; None: no logprobs at all
    echo: bool = False
    include_usage: bool = False
    stream: bool = False
    warnings: list[str] = field(default_factory=list)
    n: int = 1  # choices per prompt: usage counts each prompt once


def _choices(gen: Generation, prompts: list, n: int) -> list[Generation]:
    if len(prompts) * n > MAX_CHOICES:
        raise BadRequest(f"{len(prompts)} prompts x n = {n} is {len(prompts) * n} choices; at most {MAX_CHOICES} "
                         f"per request")
    return [replace(gen, prompt=p, seed=None if gen.seed is None else gen.seed + j, warnings=[])
            for p in prompts for j in range(n)]


def _usage_flag(body: dict) -> bool:
    opts = body.get("stream_options")
    if opts is None:
        return False
    if not isinstance(opts, dict):
        raise BadRequest("stream_options must be an object such as {\"include_usage\": true}")
    return flag(opts, "include_usage", False)


def parse(body: dict, max_tokens: int) -> Request:
    """Legacy completions. OpenAI's own defaults: temperature 1, top_p 1, no top-k or min-p
    unless asked for; a logit bias of -100 bans the token, as OpenAI documents."""
    prompts = prompts_of(body)
    n = integer(body, "n", 1, 1, MAX_CHOICES)
    lp = body.get("logprobs")
    logprobs = None if lp is None else integer(body, "logprobs", 0, 0, 20)
    gen = common(body, max_tokens, "max_tokens", 16, "logprobs", 20, temperature=1.0, top_k=0, top_p=1.0,
                 min_p=0.0, ban_at=-100.0, prompt=prompts[0])
    gen.n_probs = 0 if logprobs is None else max(1, logprobs)
    gen.echo = flag(body, "echo", False)
    warnings = gen.warnings + warn_unhonoured(body, COMPLETION_KEYS)
    return Request(_choices(gen, prompts, n), logprobs, gen.echo, _usage_flag(body), gen.stream, warnings, n)


def _response_format(body: dict, gen: Generation) -> None:
    """``response_format`` as a grammar: json_object any JSON object, json_schema that schema."""
    rf = body.get("response_format")
    if rf is None:
        return
    kind = rf.get("type") if isinstance(rf, dict) else None
    if kind == "text":
        return
    if kind == "json_object":
        gen.grammar, gen.grammar_kind = '{"type": "object"}', "json_schema"
    elif kind == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema") if isinstance(rf.get("json_schema"), dict) else None
        if not isinstance(schema, dict):
            raise BadRequest("response_format.json_schema.schema must be a JSON schema object")
        gen.grammar, gen.grammar_kind = json.dumps(schema), "json_schema"
    else:
        raise BadRequest("response_format.type must be text, json_object or json_schema")


def parse_chat(body: dict, max_tokens: int, template: Template) -> Request:
    prompt = template.prompt(body.get("messages"))
    n = integer(body, "n", 1, 1, MAX_CHOICES)
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    gen = common(body, max_tokens, key, -1, "top_logprobs", 20, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                 ban_at=-100.0, prompt=prompt)
    logprobs = integer(body, "top_logprobs", 0, 0, 20) if flag(body, "logprobs", False) else None
    if logprobs is None and body.get("top_logprobs"):
        raise BadRequest("top_logprobs needs logprobs = true")
    gen.n_probs = 0 if logprobs is None else max(1, logprobs)
    gen.stop = gen.stop + [s for s in template.stops() if s not in gen.stop]
    _response_format(body, gen)
    warnings = gen.warnings + warn_unhonoured(body, CHAT_KEYS)
    return Request(_choices(gen, [prompt], n), logprobs, False, _usage_flag(body), gen.stream, warnings, n)


def new_id(prefix: str = "cmpl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def _top(msg: dict, n: int) -> dict[str, float]:
    top = {t["token"]: t["logprob"] for t in msg.get("top_logprobs", [])[:n]}
    top.setdefault(msg["piece"], msg["logprob"])  # the sampled token is always there
    return top


class CompletionChoice:
    """One legacy-completions choice as it streams: its text, and its logprobs block with
    ``text_offset`` counted from the start of the prompt, as OpenAI counts it."""

    def __init__(self, index: int, logprobs: int | None, prompt_chars: int):
        self.index, self.n = index, logprobs
        self.offset = prompt_chars  # echo resets it to 0 when the prompt's own tokens come back
        self.text: list[str] = []
        self.lp = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        self.convictions: list = []

    def prompt(self, msg: dict) -> tuple[str, dict | None]:
        self.offset = 0
        part = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for i, piece in enumerate(msg["pieces"]):
            part["tokens"].append(piece)
            part["token_logprobs"].append(msg["logprobs"][i])
            tops = msg["top_logprobs"][i][: self.n or 0]
            part["top_logprobs"].append(None if i == 0 else {t["token"]: t["logprob"] for t in tops})
            part["text_offset"].append(self.offset)
            self.offset += len(piece)
        self.offset = len(msg["text"])
        return msg["text"], self._add(part)

    def token(self, msg: dict) -> tuple[str, dict | None]:
        part = {"tokens": [msg["piece"]], "token_logprobs": [msg["logprob"]],
                "top_logprobs": [_top(msg, self.n or 0)], "text_offset": [self.offset]}
        self.offset += len(msg["token"])
        self.convictions.append(msg["conviction"])
        return msg["token"], self._add(part)

    def _add(self, part: dict) -> dict | None:
        if self.n is None:
            return None
        for k, v in part.items():
            self.lp[k] += v
        return part

    def whole(self, text: str, done: dict) -> dict:
        return {"text": text, "index": self.index, "logprobs": self.lp if self.n is not None else None,
                "finish_reason": FINISH[done["reason"]], "convictions": self.convictions}


def chat_entry(msg: dict, n: int) -> dict:
    tops = msg.get("top_logprobs", [])[:n]
    return {"token": msg["piece"], "logprob": msg["logprob"], "bytes": list(bytes.fromhex(msg["bytes"])),
            "top_logprobs": [{"token": t["token"], "logprob": t["logprob"], "bytes": list(bytes.fromhex(t["bytes"]))}
                             for t in tops]}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class Reply:
    """One request's response, whole or streamed, on either route: its id and object names,
    the usage totals (each prompt counted once, however many choices it has), ``usage: null``
    on stream chunks when the last one carries it, and the warnings on the last choice."""

    def __init__(self, req: Request, model: str, chat: bool):
        self.req, self.model, self.chat = req, model, chat
        self.rid = new_id("chatcmpl" if chat else "cmpl")
        self.obj = "chat.completion" if chat else "text_completion"
        self.prompt_n = self.completion_n = 0

    def count(self, i: int, done: dict) -> None:
        self.completion_n += done["tokens"]
        if i % self.req.n == 0:
            self.prompt_n += done.get("prompt_tokens") or 0

    def _envelope(self, obj: str, choices: list, **extra) -> dict:
        return {"id": self.rid, "object": obj, "created": int(time.time()), "model": self.model, "choices": choices,
                **extra}

    def _warnings(self) -> dict:
        return {"warnings": self.req.warnings} if self.req.warnings else {}

    def whole(self, choices: list) -> dict:
        return self._envelope(self.obj, choices, usage=usage(self.prompt_n, self.completion_n), **self._warnings())

    def chunk(self, choice: dict, last: bool = False) -> dict:
        extra = {"usage": None} if self.req.include_usage else {}
        return self._envelope(self.obj + (".chunk" if self.chat else ""), [choice], **extra,
                              **(self._warnings() if last else {}))

    def end(self) -> list[dict]:
        """After the last choice: the usage chunk, with stream_options.include_usage."""
        if not self.req.include_usage:
            return []
        return [self._envelope(self.obj + (".chunk" if self.chat else ""), [],
                               usage=usage(self.prompt_n, self.completion_n))]

    def _done(self, i: int, m: dict, choice: dict) -> list[dict]:
        self.count(i, m)
        return [self.chunk({**choice, "index": i, "logprobs": None, "finish_reason": FINISH[m["reason"]]},
                           last=i == len(self.req.choices) - 1)]

    # -- legacy completions ---------------------------------------------------------------
    def completion_choice(self, i: int, prompt_chars: int, msgs: list[dict], done: dict) -> dict:
        self.count(i, done)
        choice = CompletionChoice(i, self.req.logprobs, prompt_chars)
        text = "".join(choice.prompt(m)[0] if m["type"] == "prompt" else choice.token(m)[0] for m in msgs)
        return choice.whole(text, done)

    def completion_stream(self, i: int, prompt_chars: int):
        """Choice i's stream formatter: each message to the chunks it makes."""
        choice = CompletionChoice(i, self.req.logprobs, prompt_chars)

        def fmt(m: dict) -> list[dict]:
            if m["type"] == "done":
                return self._done(i, m, {"text": ""})
            text, lp = choice.prompt(m) if m["type"] == "prompt" else choice.token(m)
            c = {"text": text, "index": i, "logprobs": lp, "finish_reason": None}
            if m["type"] == "token":
                c["conviction"] = m["conviction"]
            return [self.chunk(c)]
        return fmt

    # -- chat -------------------------------------------------------------------------------
    def _chat_logprobs(self, msgs: list[dict]) -> dict | None:
        n = self.req.logprobs
        return None if n is None else {"content": [chat_entry(m, n) for m in msgs]}

    def chat_choice(self, i: int, msgs: list[dict], done: dict) -> dict:
        self.count(i, done)
        return {"index": i, "message": {"role": "assistant", "content": "".join(m["token"] for m in msgs)},
                "logprobs": self._chat_logprobs(msgs), "finish_reason": FINISH[done["reason"]],
                "convictions": [m["conviction"] for m in msgs]}

    def chat_stream(self, i: int):
        """Choice i's stream formatter: a first chunk with the role, then one per token."""
        started = False

        def fmt(m: dict) -> list[dict]:
            nonlocal started
            if m["type"] == "done":
                return self._done(i, m, {"delta": {}})
            out = []
            if not started:
                started = True
                out.append(self.chunk({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                       "finish_reason": None}))
            return out + [self.chunk({"index": i, "delta": {"content": m["token"]},
                                      "logprobs": self._chat_logprobs([m]), "finish_reason": None,
                                      "conviction": m["conviction"]})]
        return fmt


def model_card(info: dict) -> dict:
    """One model of /v1/models: OpenAI's fields, llama.cpp's ``meta`` (n_ctx_train and the sizes
    front-ends read) and vLLM's ``max_model_len``, so a client can learn the context length."""
    return {"id": info.get("run", ""), "object": "model", "created": 0, "owned_by": "cockpit",
            "max_model_len": info.get("block_size"), "step": info.get("step"), "conviction": info.get("conviction"),
            "meta": {"n_ctx_train": info.get("block_size"), "n_vocab": info.get("n_vocab"),
                     "n_params": info.get("n_params"), "n_embd": info.get("n_embd"),
                     "tokenizer": info.get("tokenizer")}}
