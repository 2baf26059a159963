"""Client of the long-running completion process (``python -m engine complete RUN_DIR``).

One door between the cockpit and a loaded model: the CLI's ``cockpit complete`` uses it, and
so will the TUI's completion pane. Torch-free: the model lives in the subprocess.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, TextIO


class CompletionError(RuntimeError):
    pass


class CompletionClient:
    def __init__(self, run_dir: str | Path, step: int | None = None):
        cmd = [sys.executable, "-m", "engine", "complete", str(run_dir)]
        if step is not None:
            cmd += ["--step", str(step)]
        # its own session: a Ctrl-C in the terminal reaches the cockpit, which cancels politely
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, encoding="utf-8", bufsize=1, start_new_session=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._ids = itertools.count(1)
        first = self._read()
        if first.get("type") != "ready":
            self.close()
            raise CompletionError(first.get("message", "the completion process did not start"))
        self.info = first

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().strip().splitlines() if self.proc.poll() is not None else []
            raise CompletionError(err[-1] if err else "the completion process exited")
        return json.loads(line)

    def _send(self, obj: dict) -> None:
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def generate(self, prompt: str, mode: str = "text", max_tokens: int = 256, temperature: float = 0.8,
                 top_k: int = 50, seed: int | None = None, n_probs: int = 0, **sampling) -> Iterator[dict]:
        """Yield token messages, then the done message. Raises CompletionError for an error reply.
        ``n_probs``: each token message also lists the most likely alternatives ("top");
        ``sampling``: the engine's other sampler fields (engine.sampling.Sampling), by name."""
        rid = next(self._ids)
        self.current = rid
        self._send({"op": "generate", "id": rid, "prompt": prompt, "mode": mode, "max_tokens": max_tokens,
                    "temperature": temperature, "top_k": top_k, "seed": seed, "n_probs": n_probs, **sampling})
        while True:
            msg = self._read()
            if msg.get("id") != rid:
                continue
            if msg["type"] == "error":
                raise CompletionError(msg["message"])
            yield msg
            if msg["type"] == "done":
                return

    def cancel(self) -> None:
        self._send({"op": "cancel", "id": self.current})

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send({"op": "quit"})
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


# -- how a completion's tokens are shown (the CLI's rows and the TUI's heat map) -----------------
GREY, RESET = "\x1b[90m", "\x1b[0m"


def use_color(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def token_label(msg: dict) -> str:
    # a token that ends mid-character (byte-level or BPE) has no text of its own yet
    return msg["token"] if msg["token"] else f"<{msg['bytes']}>"


def conviction_row(token: str, conviction: float, color: bool) -> str:
    dot = f"{GREY}.{RESET}" if color else "."
    shown = "".join(dot if ch.isspace() else ch for ch in token)
    return f"{shown}{' ' * max(0, 8 - len(token))}| {conviction:.4f}"
