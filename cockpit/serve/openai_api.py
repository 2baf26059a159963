"""OpenAI's ``POST /v1/completions`` (legacy completions) shapes. ``logprobs: n`` gives the
classic {tokens, token_logprobs, top_logprobs, text_offset} block; each token's conviction rides
along as ``conviction`` in stream chunks and as ``convictions`` in a whole response."""

from __future__ import annotations

import time
import uuid

from cockpit.serve.params import BadRequest, Generation, common, flag, integer

FINISH = {"eot": "stop", "word": "stop", "length": "length", "cancelled": "stop"}


def parse(body: dict, max_tokens: int) -> Generation:
    if integer(body, "n", 1) != 1 or integer(body, "best_of", 1) != 1:
        raise BadRequest("n and best_of must be 1: one completion per request")
    if flag(body, "echo", False):
        raise BadRequest("echo = true is not supported: the prompt is not returned")
    # OpenAI's own defaults: temperature 1, top_p 1, no top-k or min-p unless asked for
    return common(body, max_tokens, "max_tokens", 16, "logprobs", 20,
                  temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)


def new_id() -> str:
    return f"cmpl-{uuid.uuid4().hex[:24]}"


def logprobs(msgs: list[dict], offset0: int = 0) -> dict:
    offsets, at = [], offset0
    for m in msgs:
        offsets.append(at)
        at += len(m["token"])
    tops = []
    for m in msgs:
        top = {t["token"]: t["logprob"] for t in m.get("top_logprobs", [])}
        top.setdefault(m["piece"], m["logprob"])  # the sampled token is always there
        tops.append(top)
    return {"tokens": [m["piece"] for m in msgs], "token_logprobs": [m["logprob"] for m in msgs],
            "top_logprobs": tops, "text_offset": offsets}


def chunk(rid: str, model: str, msg: dict | None, gen: Generation, offset: int, finish: str | None = None) -> dict:
    choice = {"text": msg["token"] if msg else "", "index": 0,
              "logprobs": logprobs([msg], offset) if (msg and gen.n_probs) else None, "finish_reason": finish}
    if msg:
        choice["conviction"] = msg["conviction"]
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model, "choices": [choice]}


def whole(rid: str, model: str, msgs: list[dict], done: dict, gen: Generation) -> dict:
    choice = {"text": "".join(m["token"] for m in msgs), "index": 0,
              "logprobs": logprobs(msgs) if gen.n_probs else None, "finish_reason": FINISH[done["reason"]],
              "convictions": [m["conviction"] for m in msgs]}
    prompt_n = done.get("prompt_tokens") or 0
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [choice],
            "usage": {"prompt_tokens": prompt_n, "completion_tokens": done["tokens"],
                      "total_tokens": prompt_n + done["tokens"]}}
