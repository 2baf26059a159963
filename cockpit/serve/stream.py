"""One generation as the HTTP routes see it: token messages after stop strings are applied,
then one summary. Both APIs format from this."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from cockpit.serve.engine_proc import EngineProcess
from cockpit.serve.params import Generation
from cockpit.serve.stops import StopMatcher


async def tokens(engine: EngineProcess, gen: Generation, stopping: Callable[[], bool]) -> AsyncIterator[dict]:
    """Yields {"type": "token", ...} messages, then {"type": "done", "reason": "eot" | "length" |
    "word" | "cancelled", "word": str, "tokens": n, "prompt_tokens": n, ...}. The caller holds the
    engine's turn; it is handed on when the engine is done, however this ends."""
    matcher = StopMatcher(gen.stop)
    sent = 0
    prompt_tokens = None
    async with contextlib.aclosing(engine.generate(gen.engine_request())) as stream:
        async for msg in stream:
            if msg["type"] == "done":
                for m in matcher.flush():
                    sent += 1
                    yield m
                yield {**msg, "word": "", "tokens": sent}
                return
            prompt_tokens = msg.get("prompt_tokens", prompt_tokens)
            for m in matcher.push(msg):
                sent += 1
                yield m
            if matcher.word is not None or stopping():
                break
    # left before the engine's own end: a stop string, or the server is shutting down
    reason = "word" if matcher.word is not None else "cancelled"
    yield {"type": "done", "task": engine.started, "reason": reason, "word": matcher.word or "", "tokens": sent,
           "prompt_tokens": prompt_tokens,
           "first_token_ms": None, "tokens_per_s": None}
