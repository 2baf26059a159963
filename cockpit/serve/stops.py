"""Stop strings over a token stream, as llama.cpp and OpenAI servers apply them: text that
could be the start of a stop string is held back until it is known not to be one, and a
generation that produces a stop string ends just before it (the stop string is not sent)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StopMatcher:
    stops: list[str]
    held: list[dict] = field(default_factory=list)  # token messages not yet released
    word: str | None = None  # the stop string that ended the generation

    def _held_text(self) -> str:
        return "".join(m["token"] for m in self.held)

    def _partial(self, text: str) -> int:
        """Length of the longest end of ``text`` that begins some stop string."""
        best = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:k]):
                    best = k
                    break
        return best

    def push(self, msg: dict) -> list[dict]:
        """Add one token message; return those that can be sent now. After a stop string is
        found (``word`` set) the caller ends the generation; the returned messages are cut so
        their text ends right before it."""
        if not self.stops:
            return [msg]
        self.held.append(msg)
        text = self._held_text()
        hits = [(text.find(s), s) for s in self.stops if s in text]
        if hits:
            at, self.word = min(hits)
            return self._release(at)
        return self._release(len(text) - self._partial(text))

    def flush(self) -> list[dict]:
        """At the end of the generation: what was held back was not a stop string after all."""
        out, self.held = self.held, []
        return out

    def _release(self, upto: int) -> list[dict]:
        out, pos = [], 0
        while self.held and pos + len(self.held[0]["token"]) <= upto:
            m = self.held.pop(0)
            pos += len(m["token"])
            out.append(m)
        if self.word is not None:  # the token the stop string begins in: keep only its text before it
            if self.held and upto > pos:
                out.append({**self.held[0], "token": self.held[0]["token"][:upto - pos]})
            self.held = []
        return out
