"""Completion from a run's checkpoint: the model loaded once, tokens streamed with their
conviction and probability.

``python -m engine complete RUN_DIR [--step N]`` is a long-running process speaking JSON lines:

  stdin:  {"op": "generate", "id": 1, "prompt": "...", "max_tokens": 256, "temperature": 0.8,
           "top_k": 50, "seed": 0, "mode": "text" | "conviction"}
          {"op": "cancel", "id": 1}          {"op": "quit"}
  stdout: {"type": "ready", "run": ..., "step": N, "conviction": true|false, ...}
          {"type": "token", "id": 1, "token": "the", "token_id": 262, "conviction": 0.12, "prob": 0.5}
          {"type": "done", "id": 1, "reason": "length" | "eot" | "cancelled", "tokens": n,
           "first_token_ms": ..., "tokens_per_s": ...}
          {"type": "error", "id": 1 | null, "message": "one line"}

Requests are read on a thread, so a cancel lands between two tokens of a running generation.
"""

from __future__ import annotations

import codecs
import json
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from engine import checkpoint
from engine.config import config_from_dict
from engine.device import pick_device
from engine.generate import sample_tokens
from engine.rundir import RunDir
from engine.tokenizers import get_tokenizer

# Below this size, one decode step is a handful of tiny matmuls on CPU, and spreading them
# over threads costs more in synchronization than it saves (measured on the quickstart model:
# ~190 tok/s with 2 threads, ~370 with 1).
SINGLE_THREAD_MAX_PARAMS = 20_000_000

NO_CONVICTION = "conviction is not available for this run: it was trained without [conviction] enabled"


@dataclass
class Token:
    text: str  # decoded text; "" while the bytes of a character are incomplete
    id: int
    conviction: float | None
    prob: float
    raw: bytes


class Completer:
    def __init__(self, run_dir: str | Path, step: int | None = None, device: str = "auto"):
        rd = RunDir(run_dir)
        if rd.path.is_file():  # an exported checkpoint (cockpit export ... --merged OUT)
            self.path, self.run_id = rd.path, rd.path.stem
        elif not rd.path.is_dir():
            raise checkpoint.CheckpointError(f"{rd.path}: no such run directory")
        else:
            self.path, self.run_id = checkpoint.find(rd.checkpoints, step), rd.id
        self.device = pick_device(device)
        payload = checkpoint.load(self.path, self.device)
        self.step = int(payload["step"])
        config_from_dict(payload["config"], str(self.path))  # a bad config is a clear error before torch work
        self.tokenizer = get_tokenizer(payload["tokenizer"])
        from engine.stages import model_from_checkpoint

        self.model, _ = model_from_checkpoint(payload, self.device)  # a stage's shape, adapters too
        self.model.eval()
        self.has_conviction = self.model.conviction_head is not None
        if self.device.type == "cpu" and self.model.num_params() < SINGLE_THREAD_MAX_PARAMS:
            torch.set_num_threads(1)
        for _ in self.generate("", max_tokens=4, seed=0):  # warm-up: the first request pays no set-up
            pass

    def info(self) -> dict:
        return {"run": self.run_id, "step": self.step, "checkpoint": str(self.path), "conviction": self.has_conviction,
                "tokenizer": self.tokenizer.name, "device": str(self.device),
                "block_size": self.model.cfg.block_size}

    def generate(self, prompt: str, max_tokens: int = 256, temperature: float = 0.8, top_k: int = 50,
                 seed: int | None = None, cancelled: Callable[[], bool] = lambda: False) -> Iterator[Token]:
        """Tokens until max_tokens, the separator token, or ``cancelled()``."""
        g = torch.Generator(device=self.device)
        g.manual_seed(seed if seed is not None else int(time.time_ns() % 2**62))
        ids = self.tokenizer.encode(prompt) if prompt else [self.tokenizer.eot]
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for s in sample_tokens(self.model, ids, max_tokens, temperature, top_k, generator=g,
                               vocab_limit=self.tokenizer.vocab_size):
            if s.id == self.tokenizer.eot:
                return
            raw = self.tokenizer.token_bytes(s.id)
            yield Token(decoder.decode(raw), s.id, s.conviction, s.prob, raw)
            if cancelled():
                return


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def serve(run_dir: str, step: int | None) -> int:
    try:
        completer = Completer(run_dir, step)
    except Exception as e:  # a missing or corrupt checkpoint must be one readable line
        _emit({"type": "error", "id": None, "message": str(e).splitlines()[0]})
        return 2
    _emit({"type": "ready", **completer.info()})
    requests: queue.Queue = queue.Queue()
    cancelled: set = set()

    def read_stdin() -> None:
        for line in sys.stdin:
            try:
                req = json.loads(line)
            except ValueError:
                _emit({"type": "error", "id": None, "message": f"not a JSON request: {line.strip()[:80]}"})
                continue
            if isinstance(req, dict) and req.get("op") == "cancel":
                cancelled.add(req.get("id"))
            else:
                requests.put(req)
        requests.put({"op": "quit"})

    threading.Thread(target=read_stdin, daemon=True).start()
    while True:
        req = requests.get()
        op = req.get("op") if isinstance(req, dict) else None
        if op == "quit":
            return 0
        if op != "generate":
            _emit({"type": "error", "id": None, "message": f"unknown op {op!r}; use generate, cancel or quit"})
            continue
        _run_request(completer, req, cancelled)


def _run_request(completer: Completer, req: dict, cancelled: set) -> None:
    rid = req.get("id")
    if req.get("mode") == "conviction" and not completer.has_conviction:
        _emit({"type": "error", "id": rid, "message": NO_CONVICTION})
        return
    t0 = time.perf_counter()
    first = None
    n = 0
    reason = "length"
    max_tokens = int(req.get("max_tokens", 256))
    try:
        for tok in completer.generate(req.get("prompt", ""), max_tokens, float(req.get("temperature", 0.8)),
                                      int(req.get("top_k", 50)), req.get("seed"), lambda: rid in cancelled):
            if first is None:
                first = time.perf_counter() - t0
            n += 1
            _emit({"type": "token", "id": rid, "token": tok.text, "token_id": tok.id,
                   "conviction": tok.conviction, "prob": tok.prob, "bytes": tok.raw.hex()})
        if rid in cancelled:
            reason = "cancelled"
        elif n < max_tokens:
            reason = "eot"
    except (ValueError, TypeError) as e:
        _emit({"type": "error", "id": rid, "message": f"bad request: {e}"})
        return
    cancelled.discard(rid)
    elapsed = time.perf_counter() - t0
    _emit({"type": "done", "id": rid, "reason": reason, "tokens": n,
           "first_token_ms": round(1000 * first, 2) if first is not None else None,
           "tokens_per_s": round(n / elapsed, 1) if elapsed > 0 else None})
