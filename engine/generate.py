"""Autoregressive sampling with a KV cache: one prefill, then one token at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from engine.model import GPT


@dataclass
class Sampled:
    id: int
    prob: float  # probability of the sampled token under the (temperature-scaled, top-k) distribution
    conviction: float | None  # the head's output at the position that produced this token


@torch.no_grad()
def sample_tokens(model: GPT, prompt: list[int], max_new: int, temperature: float = 0.8, top_k: int = 0,
                  generator: torch.Generator | None = None, vocab_limit: int | None = None) -> Iterator[Sampled]:
    """Yield sampled tokens one by one. ``vocab_limit`` masks padded ids the tokenizer lacks.
    When the context fills up, the cache is rebuilt from the newest 3/4 of the window, so the
    cost stays amortized O(1) per token."""
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
        logits = out.logits[0, -1].float()
        if vocab_limit is not None:
            logits[vocab_limit:] = float("-inf")
        logits = logits / max(temperature, 1e-6)
        if top_k > 0:
            kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = model.probs(logits)  # softmax, or StableMax for a model trained with it
        nxt = int(torch.multinomial(probs, 1, generator=generator).item())
        ids.append(nxt)
        pending = [nxt]
        conviction = float(out.conviction[0, -1]) if out.conviction is not None else None
        yield Sampled(nxt, float(probs[nxt]), conviction)
