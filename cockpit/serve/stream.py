"""One generation as the HTTP routes see it: token messages after stop strings are applied,
then one summary. All routes format from this."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from cockpit.serve.engine_proc import EngineProcess
from cockpit.serve.params import Generation
from cockpit.serve.stops import StopMatcher


async def tokens(engine: EngineProcess, gen: Generation, stopping: Callable[[], bool]) -> AsyncIterator[dict]:
    """Yields {"type": "prompt", ...} first when the request echoes its prompt, {"type": "token",
    "prompt_tokens": n, ...} messages, then {"type": "done", "reason": "eot" | "length" | "word" |
    "cancelled", "word": str, "tokens": n, "prompt_tokens": n, "truncated": bool, "cached": n, ...}.
    A stop string or the server's shutdown cancels the generation in the engine, and its own
    summary (what the window cut, the timings) still ends the stream. The caller holds the
    engine's turn; it is handed on when the engine is done, however this ends."""
    matcher = StopMatcher(gen.stop)
    sent = 0
    prompt_tokens = None
    ended: str | None = None  # why we asked the engine to stop early
    async with contextlib.aclosing(engine.generate(gen.engine_request())) as stream:
        async for msg in stream:
            if msg["type"] == "done":
                if ended is None:
                    for m in matcher.flush():
                        sent += 1
                        yield m
                yield {**msg, "reason": ended or msg["reason"], "word": matcher.word or "", "tokens": sent,
                       "prompt_tokens": msg.get("prompt_tokens", prompt_tokens)}
                return
            if ended is not None:
                continue  # a token the engine made before the cancel reached it
            if msg["type"] == "prompt":
                yield msg
                continue
            prompt_tokens = msg.get("prompt_tokens", prompt_tokens)
            for m in matcher.push(msg):
                sent += 1
                yield {**m, "prompt_tokens": prompt_tokens}
            if matcher.word is not None or stopping():
                ended = "word" if matcher.word is not None else "cancelled"
                engine.cancel(msg["id"])
