"""Completion from a run's checkpoint: the model loaded once, tokens streamed with their
conviction and probability.

``python -m engine complete RUN_DIR [--step N]`` is a long-running process speaking JSON lines:

  stdin:  {"op": "generate", "id": 1, "prompt": "..." | "prompt_ids": [ids], "max_tokens": 256,
           "temperature": 0.8, "top_k": 50, "top_p": 1.0, "min_p": 0.0, "seed": 0, "n_probs": 0,
           "mode": "text" | "conviction", and engine.sampling.Sampling's other fields: "min_keep",
           "repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty",
           "logit_bias": [[id or text, bias or false]], "ignore_eos", "n_keep", "echo",
           "grammar": TEXT, "grammar_kind": "gbnf" | "json_schema" | "lark" | "regex"}
          {"op": "cancel", "id": 1}          {"op": "quit"}
          {"op": "tokenize", "id": 2, "content": "..."}   {"op": "detokenize", "id": 3, "tokens": [ids]}
  stdout: {"type": "ready", "run": ..., "step": N, "conviction": true|false, ...}
          {"type": "token", "id": 1, "token": "the", "token_id": 262, "piece": "the", "conviction": 0.12,
           "prob": 0.5, "logprob": -1.2, "bytes": "746865",
           "top": [{"id", "token", "prob"}], "top_logprobs": [{"id", "token", "logprob"}]}  (top lists with n_probs)
          {"type": "prompt", "id": 1, "token_ids": [...], "pieces": [...], "text": ..., "logprobs": [null, ...],
           "top_logprobs": [[...], ...]}   (with echo, before the first token)
          {"type": "done", "id": 1, "reason": "length" | "eot" | "cancelled", "tokens": n, "prompt_tokens": n,
           "dropped": n, "truncated": bool, "cached": n, "first_token_ms": ..., "prompt_ms": ...,
           "predicted_ms": ..., "tokens_per_s": ...}
          {"type": "tokens", "id": 2, "tokens": [ids], "pieces": [...]}   {"type": "text", "id": 3, "content": "..."}
          {"type": "error", "id": 1 | null, "message": "one line"}

``token`` is the text the token completes (incremental UTF-8: "" while a character's bytes are
incomplete); ``piece`` is the token's own bytes decoded on their own (what probability lists show).
``prob`` is under the sampling distribution; ``logprob`` (null unless n_probs > 0) under the model's
own (temperature 1, no filter).
Requests are read on a thread, so a cancel lands between two tokens of a running generation, and
tokenize/detokenize are answered at once, even while a generation runs.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from engine import checkpoint
from engine.device import pick_device
from engine.generate import Context, sample_tokens
from engine.sampling import Sampling, bias_vector
from runspec.config.load import config_from_dict
from runspec.data.tokenizers import get_tokenizer
from runspec.run.rundir import RunDir

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
    logprob: float | None = None  # with n_probs
    top: list[tuple[int, float]] = field(default_factory=list)  # (id, prob) after the sampling filters
    top_raw: list[tuple[int, float]] = field(default_factory=list)  # (id, logprob) under the model


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
        cfg = config_from_dict(payload["config"], str(self.path))  # a bad config is a clear error before torch work
        self.chat = dataclasses.asdict(cfg.serve)  # the chat template of /v1/chat/completions
        self.tokenizer = get_tokenizer(payload["tokenizer"])
        from engine.stages import model_from_checkpoint

        self.model, _ = model_from_checkpoint(payload, self.device)  # a stage's shape, adapters too
        self.model.eval()
        self.has_conviction = self.model.head("conviction") is not None
        if self.device.type == "cpu" and self.model.num_params() < SINGLE_THREAD_MAX_PARAMS:
            torch.set_num_threads(1)
        nl = self.tokenizer.encode("\n")
        self.newline = nl[0] if len(nl) == 1 else None  # penalize_nl = false exempts it
        self._lltok = None  # llguidance's tokenizer, on the first grammar request
        for _ in self.generate("", Sampling(max_tokens=4, seed=0)):  # warm-up: the first request pays no set-up
            pass

    def info(self) -> dict:
        return {"run": self.run_id, "step": self.step, "checkpoint": str(self.path), "conviction": self.has_conviction,
                "tokenizer": self.tokenizer.name, "device": str(self.device),
                "block_size": self.model.cfg.block_size, "n_vocab": self.tokenizer.vocab_size,
                "n_params": self.model.num_params(), "n_embd": self.model.cfg.d_model, "chat": self.chat}

    def piece(self, token_id: int) -> str:
        """A token's own bytes as text (a partial character shows as U+FFFD)."""
        return self.tokenizer.token_bytes(token_id).decode("utf-8", errors="replace")

    def encode(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            return self.tokenizer.encode(prompt) if prompt else [self.tokenizer.eot]
        bad = [i for i in prompt if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.tokenizer.vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]!r} is not in this run's vocabulary (0..{self.tokenizer.vocab_size - 1})")
        return list(prompt) or [self.tokenizer.eot]

    def generate(self, prompt: str | list[int], s: Sampling, cancelled: Callable[[], bool] = lambda: False,
                 context: Context | None = None, grammar_kind: str = "gbnf") -> Iterator[Token]:
        """Tokens until max_tokens, the separator token (unless ignore_eos), the grammar's end,
        or ``cancelled()``. ``prompt`` is text or token ids; ``context`` records what the window
        cut (for the reply's truncated and tokens_cached)."""
        g = torch.Generator(device=self.device)
        g.manual_seed(s.seed if s.seed is not None else int(time.time_ns() % 2**62))
        ids = self.encode(prompt)
        vocab = self.tokenizer.vocab_size
        bias = bias_vector(s.logit_bias, self.tokenizer.encode, vocab) if s.logit_bias else None
        constraint = self.constraint(grammar_kind, s.grammar) if s.grammar else None
        stream = sample_tokens(self.model, ids, s, generator=g, vocab_limit=vocab, eot=self.tokenizer.eot, bias=bias,
                               constraint=constraint, context=context, newline=self.newline)
        return self._tokens(stream, s, cancelled)  # the checks above raise now, not at the first token

    def _tokens(self, stream, s: Sampling, cancelled: Callable[[], bool]) -> Iterator[Token]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for t in stream:
            if t.id == self.tokenizer.eot and not s.ignore_eos:
                return
            raw = self.tokenizer.token_bytes(t.id)
            yield Token(decoder.decode(raw), t.id, t.conviction, t.prob, raw, t.logprob, t.top, t.top_raw)
            if cancelled():
                return

    def constraint(self, kind: str, text: str):
        """A grammar's state for one generation; the tokenizer's llguidance view is built once."""
        from engine.grammar import KINDS, Constraint, compile_grammar, lltokenizer

        if kind not in KINDS:
            raise ValueError(f"grammar_kind = {kind!r} must be one of {', '.join(KINDS)}")
        if self._lltok is None:
            self._lltok = lltokenizer(self.tokenizer)
        return Constraint(self._lltok, compile_grammar(kind, text, self._lltok), self.model.vocab_size, self.device)


_emit_lock = threading.Lock()  # the reader thread answers tokenize requests while a generation writes


def _emit(obj: dict) -> None:
    line = json.dumps(obj, ensure_ascii=False) + "\n"
    with _emit_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def _answer_now(completer: Completer, req: dict) -> None:
    """tokenize / detokenize: cheap, so answered on the reader thread without waiting for a generation."""
    rid = req.get("id")
    try:
        if req["op"] == "tokenize":
            content = req.get("content", "")
            if not isinstance(content, str):
                raise ValueError(f"content = {content!r} must be a string")
            ids = completer.tokenizer.encode(content)
            _emit({"type": "tokens", "id": rid, "tokens": ids, "pieces": [completer.piece(i) for i in ids]})
        else:
            tokens = req.get("tokens", [])
            if not isinstance(tokens, list):
                raise ValueError(f"tokens = {tokens!r} must be a list of token ids")
            ids = completer.encode(tokens) if tokens else []
            _emit({"type": "text", "id": rid, "content": completer.tokenizer.decode(ids)})
    except ValueError as e:
        _emit({"type": "error", "id": rid, "message": f"bad request: {e}"})


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
            elif isinstance(req, dict) and req.get("op") in ("tokenize", "detokenize"):
                _answer_now(completer, req)
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
    context = Context()
    t0 = time.perf_counter()
    try:
        sampling = Sampling.from_request(req)
        prompt = req["prompt_ids"] if req.get("prompt_ids") is not None else req.get("prompt", "")
        if not isinstance(prompt, (str, list)):
            raise ValueError(f"prompt = {prompt!r} must be text or a list of token ids")
        ids = completer.encode(prompt)  # once: generate() takes the ids as they are
        tokens = completer.generate(ids, sampling, lambda: rid in cancelled, context, req.get("grammar_kind") or "gbnf")
    except (ValueError, TypeError) as e:
        _emit({"type": "error", "id": rid, "message": f"bad request: {e}"})
        return
    first = None
    n = 0
    reason = "length"
    piece = completer.piece
    raw = completer.tokenizer.token_bytes

    def alternatives(pairs, key: str) -> list[dict]:
        return [{"id": i, "token": piece(i), "bytes": raw(i).hex(), key: v} for i, v in pairs]

    for tok in tokens:
        if first is None:
            first = time.perf_counter() - t0
            if sampling.echo:
                _emit_prompt(completer, rid, ids, context, alternatives)
        n += 1
        msg = {"type": "token", "id": rid, "token": tok.text, "token_id": tok.id, "piece": piece(tok.id),
               "conviction": tok.conviction, "prob": tok.prob, "logprob": tok.logprob, "bytes": tok.raw.hex()}
        if n == 1:
            msg["prompt_tokens"] = context.prompt_tokens
        if sampling.n_probs:
            msg["top"] = alternatives(tok.top, "prob")
            msg["top_logprobs"] = alternatives(tok.top_raw, "logprob")
        _emit(msg)
    if first is None and sampling.echo:  # nothing generated (max_tokens 0): the prompt is still scored
        _emit_prompt(completer, rid, ids, context, alternatives)
    if rid in cancelled:
        reason = "cancelled"
    elif n < sampling.max_tokens:
        reason = "eot"
    cancelled.discard(rid)
    elapsed = time.perf_counter() - t0
    prompt_s = first if first is not None else elapsed
    _emit({"type": "done", "id": rid, "reason": reason, "tokens": n, "prompt_tokens": context.prompt_tokens,
           "dropped": context.dropped, "truncated": context.truncated, "cached": context.cached,
           "first_token_ms": round(1000 * first, 2) if first is not None else None,
           "prompt_ms": round(1000 * prompt_s, 3), "predicted_ms": round(1000 * (elapsed - prompt_s), 3),
           "tokens_per_s": round(n / elapsed, 1) if elapsed > 0 else None})


def _emit_prompt(completer: Completer, rid, ids: list[int], context: Context, alternatives) -> None:
    """The prompt's tokens and their logprobs (the first has none; nor do tokens the window cut)."""
    scores = context.prompt_scores or [(None, [])] * len(ids)
    _emit({"type": "prompt", "id": rid, "token_ids": ids, "pieces": [completer.piece(i) for i in ids],
           "text": completer.tokenizer.decode(ids), "logprobs": [lp for lp, _ in scores],
           "top_logprobs": [alternatives(top, "logprob") for _, top in scores]})
