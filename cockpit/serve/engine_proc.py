"""The engine's completion process, driven from asyncio.

One generation at a time (the engine runs them one after another anyway); later requests wait
in arrival order, and past ``max_waiting`` they are refused (the server answers 503). A
generation that is abandoned — the client went away, a stop string matched — is cancelled in
the engine, and the next one starts only after the engine has said it is done with it, so no
tokens of one request can leak into another.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path


class EngineError(RuntimeError):
    """The engine refused a request (the message is one line, meant for the client)."""


class EngineGone(EngineError):
    """The completion process exited or failed to start."""


class Busy(RuntimeError):
    """Too many requests are already waiting."""


class EngineProcess:
    def __init__(self, target: Path, step: int | None, max_waiting: int = 8):
        self.target, self.step, self.max_waiting = target, step, max_waiting
        self.info: dict = {}
        self.proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Queue] = {}
        self._turn = asyncio.Lock()  # FIFO: asyncio wakes waiters in the order they came
        self._waiting = 0
        self._reader: asyncio.Task | None = None
        self.gone: str | None = None  # why the process is no longer usable
        self.started = 0  # generations begun, in order: the number of each is its task id
        self.finished: dict[str, int] = {}  # generations by how they ended (eot, length, cancelled): /props shows it

    async def start(self) -> dict:
        cmd = [sys.executable, "-m", "engine", "complete", str(self.target)]
        if self.step is not None:
            cmd += ["--step", str(self.step)]
        # its own session: a Ctrl-C in the terminal reaches the server, which shuts down in order
        self.proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, limit=64 * 1024 * 1024, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        first = await self._read_line()
        if first is None or first.get("type") != "ready":
            why = (first or {}).get("message") or await self._stderr_tail() or "the completion process did not start"
            await self.close()
            raise EngineGone(why)
        self.info = first
        self._reader = asyncio.create_task(self._read_loop())
        return first

    async def _read_line(self) -> dict | None:
        line = await self.proc.stdout.readline()
        if not line:
            return None
        return json.loads(line)

    async def _stderr_tail(self) -> str:
        try:
            err = await asyncio.wait_for(self.proc.stderr.read(), 5)
        except (asyncio.TimeoutError, ValueError):
            return ""
        lines = err.decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    async def _read_loop(self) -> None:
        while True:
            msg = await self._read_line()
            if msg is None:
                break
            q = self._replies.get(msg.get("id"))
            if q is not None:
                q.put_nowait(msg)
        self.gone = f"the completion process exited: {await self._stderr_tail() or 'no reason given'}"
        for q in self._replies.values():
            q.put_nowait({"type": "error", "message": self.gone, "gone": True})

    def _send(self, obj: dict) -> None:
        if self.gone or self.proc is None or self.proc.stdin.is_closing():
            raise EngineGone(self.gone or "the completion process is not running")
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())

    async def _ask(self, obj: dict) -> dict:
        """A request answered with one message (tokenize, detokenize)."""
        rid = next(self._ids)
        q = self._replies[rid] = asyncio.Queue()
        try:
            self._send({**obj, "id": rid})
            msg = await q.get()
        finally:
            self._replies.pop(rid, None)
        if msg["type"] == "error":
            raise (EngineGone if msg.get("gone") else EngineError)(msg["message"].removeprefix("bad request: "))
        return msg

    async def tokenize(self, content: str) -> dict:
        return await self._ask({"op": "tokenize", "content": content})

    async def detokenize(self, tokens: list) -> str:
        return (await self._ask({"op": "detokenize", "tokens": tokens}))["content"]

    # -- generations -------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def busy(self) -> bool:
        return self._turn.locked()

    async def turn(self) -> None:
        """Wait for this request's turn. Raises Busy when too many are waiting already."""
        if self._turn.locked() and self._waiting >= self.max_waiting:
            raise Busy(f"{self._waiting} requests are already waiting for the model; try again shortly")
        self._waiting += 1
        try:
            await self._turn.acquire()
        finally:
            self._waiting -= 1

    def release_turn(self) -> None:
        if self._turn.locked():
            self._turn.release()

    async def generate(self, request: dict) -> AsyncIterator[dict]:
        """Token messages, then the done message. Call after ``turn()``; the turn is handed on
        when the engine has finished this generation, however the caller leaves."""
        rid = next(self._ids)
        q: asyncio.Queue = asyncio.Queue()
        self._replies[rid] = q
        finished = False
        self.started += 1
        task = self.started
        try:
            self._send({**request, "op": "generate", "id": rid})
            while True:
                msg = await q.get()
                if msg["type"] == "error":
                    finished = True
                    raise (EngineGone if msg.get("gone") else EngineError)(
                        msg["message"].removeprefix("bad request: "))
                if msg["type"] == "done":
                    finished = True
                    self._count(msg)
                yield {**msg, "task": task}
                if finished:
                    return
        finally:
            if finished or self.gone:
                self._replies.pop(rid, None)
                self.release_turn()
            else:
                # Left early. This may run inside a cancelled scope, where every await is
                # cancelled again: cancel with a plain write, and wait for the engine's "done"
                # in a task of its own before the next request may start.
                try:
                    self._send({"op": "cancel", "id": rid})
                except EngineGone:
                    pass
                asyncio.get_running_loop().create_task(self._drain(rid, q))

    def cancel(self, rid: int) -> None:
        """Ask the engine to end generation ``rid`` at its next token; its "done" still comes."""
        try:
            self._send({"op": "cancel", "id": rid})
        except EngineGone:
            pass

    def _count(self, msg: dict) -> None:
        reason = msg.get("reason", "error")
        self.finished[reason] = self.finished.get(reason, 0) + 1

    async def _drain(self, rid: int, q: asyncio.Queue) -> None:
        try:
            while (msg := await q.get())["type"] not in ("done", "error"):
                pass
            self._count(msg)
        finally:
            self._replies.pop(rid, None)
            self.release_turn()

    async def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            try:
                for rid in list(self._replies):  # a running generation ends at its next token
                    self.proc.stdin.write((json.dumps({"op": "cancel", "id": rid}) + "\n").encode())
                self.proc.stdin.write(b'{"op": "quit"}\n')
                await asyncio.wait_for(self.proc.wait(), 5)
            except (OSError, asyncio.TimeoutError, ConnectionError):
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._reader.cancel()
