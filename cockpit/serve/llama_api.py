"""llama.cpp server's shapes: ``POST /completion`` requests, stream chunks and the final
message, with the fields llama.cpp front-ends and clients read (and some validate:
llamacpp-client requires ``tokens_evaluated`` on every chunk and ``tokens_cached`` at the end).
Each token also carries ``conviction`` (null for a run without the head): front-ends that do
not know it ignore it."""

from __future__ import annotations

from cockpit.serve.params import SAMPLER_KEYS, Generation, common, flag, warn_unhonoured

STOP_TYPES = {"eot": "eos", "length": "limit", "word": "word", "cancelled": "none"}
KNOWN = SAMPLER_KEYS | {"n_predict", "n_probs", "post_sampling_probs", "response_fields", "model"}


def parse(body: dict, max_tokens: int) -> Generation:
    gen = common(body, max_tokens, "n_predict", -1, "n_probs", 100,
                 temperature=0.8, top_k=40, top_p=0.95, min_p=0.05)
    gen.post_sampling_probs = flag(body, "post_sampling_probs", False)
    gen.warnings += warn_unhonoured(body, KNOWN)
    return gen


def response_fields(body: dict) -> list[str] | None:
    """llama.cpp's ``response_fields``: only these keys of the final message (dotted paths reach
    into objects, as ``generation_settings.n_predict``)."""
    fields = body.get("response_fields")
    if fields is None:
        return None
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        from cockpit.serve.params import BadRequest

        raise BadRequest("response_fields must be a list of field names")
    return fields


def only(message: dict, fields: list[str] | None) -> dict:
    if fields is None:
        return message
    out = {}
    for f in fields:
        value, found = message, True
        for part in f.split("."):
            if isinstance(value, dict) and part in value:
                value = value[part]
            else:
                found = False
                break
        if found:
            out[f] = value
    return out


def _with_sampled(top: list[dict], msg: dict, key: str) -> list[dict]:
    """The sampled token must be in the list (front-ends find its probability by string match);
    with top-k wider than n_probs it may not be among the n most likely."""
    out = [{"id": t["id"], "token": t["token"], "bytes": list(bytes.fromhex(t["bytes"])), key: t[key]} for t in top]
    if all(t["id"] != msg["token_id"] for t in top):
        value = msg["prob"] if key == "prob" else msg["logprob"]
        out.append({"id": msg["token_id"], "token": msg["piece"], "bytes": list(bytes.fromhex(msg["bytes"])),
                    key: value})
    return out


def prob_entry(msg: dict, post_sampling: bool) -> dict:
    entry = {"id": msg["token_id"], "token": msg["piece"], "bytes": list(bytes.fromhex(msg["bytes"])),
             "conviction": msg["conviction"]}
    if post_sampling:
        entry["prob"] = msg["prob"]
        entry["top_probs"] = _with_sampled(msg.get("top", []), msg, "prob")
    else:
        entry["logprob"] = msg["logprob"]
        entry["top_logprobs"] = _with_sampled(msg.get("top_logprobs", []), msg, "logprob")
    return entry


def chunk(msg: dict, gen: Generation, n: int) -> dict:
    out = {"index": 0, "content": msg["token"], "tokens": [msg["token_id"]], "stop": False, "id_slot": 0,
           "tokens_predicted": n, "tokens_evaluated": msg.get("prompt_tokens") or 0,
           "conviction": msg["conviction"], "prob": msg["prob"]}
    if gen.n_probs:
        out["completion_probabilities"] = [prob_entry(msg, gen.post_sampling_probs)]
    return out


def settings(gen: Generation, info: dict) -> dict:
    return {"n_predict": gen.n_predict, "temperature": gen.temperature, "top_k": gen.top_k, "top_p": gen.top_p,
            "min_p": gen.min_p, "min_keep": gen.min_keep, "seed": -1 if gen.seed is None else gen.seed,
            "stop": gen.stop, "n_probs": gen.n_probs, "post_sampling_probs": gen.post_sampling_probs,
            "stream": gen.stream, "n_ctx": info.get("block_size"), "repeat_penalty": gen.repeat_penalty,
            "repeat_last_n": gen.repeat_last_n, "presence_penalty": gen.presence_penalty,
            "frequency_penalty": gen.frequency_penalty, "penalize_nl": gen.penalize_nl,
            "ignore_eos": gen.ignore_eos, "n_keep": gen.n_keep, "logit_bias": gen.logit_bias,
            "grammar": gen.grammar if gen.grammar_kind == "gbnf" else "", "n_discard": 0}


def timings(done: dict) -> dict:
    n, prompt_n = done["tokens"], done.get("prompt_tokens") or 0
    prompt_ms, predicted_ms = done.get("prompt_ms") or 0.0, done.get("predicted_ms") or 0.0
    return {"prompt_n": prompt_n, "prompt_ms": prompt_ms,
            "prompt_per_token_ms": prompt_ms / prompt_n if prompt_n else 0.0,
            "prompt_per_second": 1000 * prompt_n / prompt_ms if prompt_ms else 0.0,
            "predicted_n": n, "predicted_ms": predicted_ms,
            "predicted_per_token_ms": predicted_ms / n if n else 0.0,
            "predicted_per_second": done.get("tokens_per_s") or (1000 * n / predicted_ms if predicted_ms else 0.0),
            "first_token_ms": done.get("first_token_ms")}


def final(done: dict, gen: Generation, info: dict, content: str = "", extra: dict | None = None) -> dict:
    stop_type = STOP_TYPES.get(done["reason"], "none")
    out = {"index": 0, "content": content, "tokens": [], "stop": True, "id_slot": 0, "id_task": done.get("task"),
           "model": info.get("run"), "prompt": gen.prompt if isinstance(gen.prompt, str) else "",
           "has_new_line": "\n" in content,
           "stop_type": stop_type, "stopped_eos": stop_type == "eos", "stopped_limit": stop_type == "limit",
           "stopped_word": stop_type == "word", "stopping_word": done.get("word", ""),
           "tokens_predicted": done["tokens"], "tokens_evaluated": done.get("prompt_tokens") or 0,
           "tokens_cached": done.get("cached") or 0, "truncated": bool(done.get("truncated")),
           "tokens_dropped": done.get("dropped") or 0,
           "generation_settings": settings(gen, info), "timings": timings(done), **(extra or {})}
    if gen.warnings:
        out["warnings"] = gen.warnings
    return out
