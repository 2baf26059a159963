"""Autoregressive sampling with a KV cache: one prefill, then one token at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from engine.model import GPT
from engine.sampling import Penalties, Sampling, filter_probs

__all__ = ["Context", "Sampled", "filter_probs", "sample_tokens"]


@dataclass
class Sampled:
    id: int
    prob: float  # probability of the sampled token under the sampling distribution (temperature, top-k/p, min-p)
    conviction: float | None  # the head's output at the position that produced this token
    logprob: float | None = None  # under the model's own distribution (temperature 1, no filter); with n_probs
    # the n most likely tokens, when asked for: (id, prob) after sampling filters, (id, logprob) before
    top: list[tuple[int, float]] = field(default_factory=list)
    top_raw: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Context:
    """What a generation did with the model's window, for the reply's ``truncated`` and
    ``tokens_cached``: llama.cpp's meanings."""

    prompt_tokens: int = 0
    dropped: int = 0  # prompt tokens cut before the first step: they never conditioned the output
    shifted: bool = False  # the window moved on during the generation (older tokens left it)
    cached: int = 0  # tokens in the KV cache when the generation ended
    # with echo: each prompt token's (logprob, [(id, logprob)] top) under the model; None for the first
    prompt_scores: list[tuple[float | None, list[tuple[int, float]]]] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return self.dropped > 0 or self.shifted


def _kept(prompt_len: int, n_keep: int, block: int) -> int:
    keep = prompt_len if n_keep < 0 else min(n_keep, prompt_len)
    if keep >= (3 * block) // 4:
        raise ValueError(f"n_keep = {n_keep} keeps {keep} prompt tokens, but the context is {block}: "
                         f"keep fewer than {(3 * block) // 4}")
    return keep


def _window(ids: list[int], keep: int, size: int) -> list[int]:
    """The first ``keep`` tokens and the newest ``size - keep``: llama.cpp's n_keep."""
    return ids if len(ids) <= size else ids[:keep] + ids[len(ids) - (size - keep):]


def _top(values: torch.Tensor, n: int) -> list[tuple[int, float]]:
    v, i = torch.topk(values, min(n, values.numel()))
    return [(int(a), float(b)) for a, b in zip(i, v) if torch.isfinite(b)]


@torch.no_grad()
def _score_prompt(model: GPT, ctx: list[int], n_probs: int, vocab_limit: int | None) -> list:
    """Each prompt token's logprob under the model given the tokens before it (the first has none)."""
    device = next(model.parameters()).device
    fresh = model.new_cache() if model.memory is not None else None  # a memory reads a long prompt segment by segment
    logits = model(torch.tensor([ctx], dtype=torch.long, device=device), cache=fresh).logits[0].float()
    if vocab_limit is not None:
        logits[:, vocab_limit:] = float("-inf")
    logp = torch.log(model.probs(logits))
    out: list = [(None, [])]
    for pos in range(1, len(ctx)):
        row = logp[pos - 1]
        out.append((float(row[ctx[pos]]), _top(row, n_probs) if n_probs else []))
    return out


@torch.no_grad()
def sample_tokens(model: GPT, prompt: list[int], s: Sampling, generator: torch.Generator | None = None,
                  vocab_limit: int | None = None, *, eot: int | None = None, bias: dict[int, float] | None = None,
                  constraint=None, context: Context | None = None,
                  newline: int | None = None) -> Iterator[Sampled]:
    """Yield sampled tokens one by one (engine.sampling says in what order the settings act).
    ``vocab_limit`` masks padded ids the tokenizer lacks; ``eot`` is the separator that
    ``ignore_eos`` bans, ``newline`` the token ``penalize_nl = false`` exempts; ``constraint`` is a grammar (engine.grammar.Constraint), and the
    generation ends when it allows nothing. When the context fills up, the cache is rebuilt
    from the newest 3/4 of the window (after the n_keep first tokens), so the cost stays
    amortized O(1) per token; ``context`` records what was cut. A model with a memory (XL,
    compressive) never cuts: the whole prompt goes in segment by segment and earlier segments
    live on in the memory."""
    device = next(model.parameters()).device
    block = model.cfg.block_size
    ids = list(prompt) or [0]
    ctx = context if context is not None else Context()
    ctx.prompt_tokens = len(ids)
    remembers = model.memory is not None  # a memory kind: the window never fills, earlier segments roll into memory
    keep = _kept(len(ids), s.n_keep, block) if not remembers else 0
    pending = _window(ids, keep, block) if not remembers else ids
    ctx.dropped = len(ids) - len(pending)
    if s.echo:
        scores = _score_prompt(model, pending, s.n_probs, vocab_limit)
        ctx.prompt_scores = [(None, [])] * ctx.dropped + scores
    cache = model.new_cache()
    vocab = model.vocab_size
    penalties = None
    if s.penalized:
        penalties = Penalties(s, vocab, block, device, newline)
        for t in ids[-penalties.n:]:
            penalties.push(t)
    bias_ids = bias_vals = None
    if bias:
        bias_ids = torch.tensor(list(bias), dtype=torch.long, device=device)
        bias_vals = torch.tensor(list(bias.values()), dtype=torch.float32, device=device)
    for _ in range(s.max_tokens):
        if not remembers and cache[0].length + len(pending) > block:
            cache = model.new_cache()
            pending = _window(ids, keep, (3 * block) // 4)
            ctx.shifted = True
        x = torch.tensor([pending], dtype=torch.long, device=device)
        out = model(x, cache=cache)
        ctx.cached = cache[0].length
        raw = out.logits[0, -1].float()
        if vocab_limit is not None:
            raw[vocab_limit:] = float("-inf")
        logits = raw
        if bias_ids is not None:
            logits = logits.index_add(0, bias_ids, bias_vals)
        if penalties is not None:
            logits = penalties.apply(logits)
        if s.ignore_eos and eot is not None:
            logits = logits.clone() if logits is raw else logits
            logits[eot] = float("-inf")
        if constraint is not None:
            if constraint.finished:
                return
            logits = logits.masked_fill(~constraint.allowed(), float("-inf"))
        if logits is not raw and not bool(torch.isfinite(logits).any()):
            return  # nothing may follow (a grammar that only allows the banned separator)
        if s.temperature <= 0:
            probs = torch.zeros_like(logits)
            probs[int(torch.argmax(logits))] = 1.0
        else:
            logits = logits / s.temperature
            if s.top_k > 0:
                kth = torch.topk(logits, min(max(s.top_k, s.min_keep), logits.numel())).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = model.probs(logits)  # softmax, or StableMax for a model trained with it
            if s.top_p < 1.0 or s.min_p > 0.0:
                probs = filter_probs(probs, s.top_p, s.min_p, s.min_keep)
        nxt = int(torch.multinomial(probs, 1, generator=generator).item())
        ids.append(nxt)
        pending = [nxt]
        if penalties is not None:
            penalties.push(nxt)
        if constraint is not None:
            constraint.accept(nxt)
        conviction = float(out.conviction[0, -1]) if out.conviction is not None else None
        sampled = Sampled(nxt, float(probs[nxt]), conviction)
        if s.n_probs > 0:  # a second distribution and two top-k: only when someone asked for them
            model_logp = torch.log(model.probs(raw))
            sampled.logprob = float(model_logp[nxt])
            sampled.top = [(i, p) for i, p in _top(probs, s.n_probs) if p > 0]
            sampled.top_raw = _top(model_logp, s.n_probs)
        yield sampled
