"""Autoregressive sampling with a KV cache: one prefill, then one token at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from engine.model import GPT


@dataclass
class Sampled:
    id: int
    prob: float  # probability of the sampled token under the sampling distribution (temperature, top-k/p, min-p)
    conviction: float | None  # the head's output at the position that produced this token
    logprob: float | None = None  # under the model's own distribution (temperature 1, no filter); with n_probs
    # the n most likely tokens, when asked for: (id, prob) after sampling filters, (id, logprob) before
    top: list[tuple[int, float]] = field(default_factory=list)
    top_raw: list[tuple[int, float]] = field(default_factory=list)


def filter_probs(probs: torch.Tensor, top_p: float = 1.0, min_p: float = 0.0) -> torch.Tensor:
    """Nucleus and min-p filtering of a probability vector, renormalized. The most likely
    token always survives, so the result is never empty."""
    if min_p > 0.0:
        probs = torch.where(probs >= min_p * probs.max(), probs, torch.zeros_like(probs))
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_p, 0) - sorted_p  # mass of the tokens ranked above each one
        keep = before < top_p
        keep[0] = True
        probs = torch.zeros_like(probs).scatter(0, order, sorted_p * keep)
    return probs / probs.sum()


@torch.no_grad()
def sample_tokens(model: GPT, prompt: list[int], max_new: int, temperature: float = 0.8, top_k: int = 0,
                  generator: torch.Generator | None = None, vocab_limit: int | None = None,
                  top_p: float = 1.0, min_p: float = 0.0, n_probs: int = 0) -> Iterator[Sampled]:
    """Yield sampled tokens one by one. ``vocab_limit`` masks padded ids the tokenizer lacks;
    ``temperature <= 0`` is greedy. When the context fills up, the cache is rebuilt from the
    newest 3/4 of the window, so the cost stays amortized O(1) per token."""
    device = next(model.parameters()).device
    block = model.cfg.block_size
    ids = list(prompt) or [0]
    cache = model.new_cache()
    pending = ids[-block:]
    for _ in range(max_new):
        if cache[0].length + len(pending) > block:
            cache = model.new_cache()
            pending = ids[-(3 * block // 4):]
        x = torch.tensor([pending], dtype=torch.long, device=device)
        out = model(x, cache=cache)
        raw = out.logits[0, -1].float()
        if vocab_limit is not None:
            raw[vocab_limit:] = float("-inf")
        if temperature <= 0:
            probs = torch.zeros_like(raw)
            probs[int(torch.argmax(raw))] = 1.0
        else:
            logits = raw / temperature
            if top_k > 0:
                kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = model.probs(logits)  # softmax, or StableMax for a model trained with it
            if top_p < 1.0 or min_p > 0.0:
                probs = filter_probs(probs, top_p, min_p)
        nxt = int(torch.multinomial(probs, 1, generator=generator).item())
        ids.append(nxt)
        pending = [nxt]
        conviction = float(out.conviction[0, -1]) if out.conviction is not None else None
        s = Sampled(nxt, float(probs[nxt]), conviction)
        if n_probs > 0:  # a second distribution and two top-k: only when someone asked for them
            model_logp = torch.log(model.probs(raw))
            s.logprob = float(model_logp[nxt])
            n = min(n_probs, probs.numel())
            p, i = torch.topk(probs, n)
            s.top = [(int(a), float(b)) for a, b in zip(i, p) if b > 0]
            lp, i = torch.topk(model_logp, n)
            s.top_raw = [(int(a), float(b)) for a, b in zip(i, lp) if torch.isfinite(b)]
        yield s
