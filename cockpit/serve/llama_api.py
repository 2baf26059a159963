"""llama.cpp server's shapes: ``POST /completion`` requests, stream chunks and the final
message, as mikupad and other llama.cpp front-ends read them. Each token also carries
``conviction`` (null for a run without the head): front-ends that do not know it ignore it."""

from __future__ import annotations

from cockpit.serve.params import Generation, common, flag

STOP_TYPES = {"eot": "eos", "length": "limit", "word": "word", "cancelled": "none"}


def parse(body: dict, max_tokens: int) -> Generation:
    gen = common(body, max_tokens, "n_predict", -1, "n_probs", 100,
                 temperature=0.8, top_k=40, top_p=0.95, min_p=0.05)
    gen.post_sampling_probs = flag(body, "post_sampling_probs", False)
    return gen


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
           "tokens_predicted": n, "conviction": msg["conviction"], "prob": msg["prob"]}
    if gen.n_probs:
        out["completion_probabilities"] = [prob_entry(msg, gen.post_sampling_probs)]
    return out


def settings(gen: Generation, info: dict) -> dict:
    return {"n_predict": gen.n_predict, "temperature": gen.temperature, "top_k": gen.top_k, "top_p": gen.top_p,
            "min_p": gen.min_p, "seed": -1 if gen.seed is None else gen.seed, "stop": gen.stop,
            "n_probs": gen.n_probs, "post_sampling_probs": gen.post_sampling_probs, "stream": gen.stream,
            "n_ctx": info.get("block_size")}


def final(done: dict, gen: Generation, info: dict, content: str = "", extra: dict | None = None) -> dict:
    tps = done.get("tokens_per_s")
    return {"index": 0, "content": content, "stop": True, "id_slot": 0, "id_task": done.get("task"),
            "model": info.get("run"),
            "stop_type": STOP_TYPES.get(done["reason"], "none"), "stopping_word": done.get("word", ""),
            "tokens_predicted": done["tokens"], "tokens_evaluated": done.get("prompt_tokens"),
            "truncated": False, "generation_settings": settings(gen, info),
            "timings": {"predicted_n": done["tokens"], "predicted_per_second": tps,
                        "first_token_ms": done.get("first_token_ms")},
            **(extra or {})}
