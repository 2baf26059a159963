"""The HTTP side: a Starlette app over one EngineProcess.

Routes: our page at ``/``; llama.cpp's ``/completion``, ``/tokenize``, ``/detokenize``,
``/health``, ``/props``; OpenAI's ``/v1/completions`` and ``/v1/models``; and ``/cockpit/runs``
and ``/cockpit/load`` for the page's run and checkpoint picker. Errors are one line, in the
shape each API uses: OpenAI's under ``/v1/``, llama.cpp's elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cockpit.serve import llama_api, openai_api
from cockpit.serve.engine_proc import Busy, EngineError, EngineGone, EngineProcess
from cockpit.serve.params import BadRequest, Generation, flag
from cockpit.serve.stream import tokens

OPEN_PATHS = {"/", "/health"}  # reachable without the key: the page asks for it itself


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Limits:
    max_tokens: int = 4096  # n_predict / max_tokens per request
    max_body: int = 1 << 20  # bytes of a request body
    max_waiting: int = 8  # requests waiting for the model before 503


@dataclass
class State:
    runs_dir: Path
    engine: EngineProcess
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    stopping: bool = False  # set by SIGTERM: generations end at their next token

    async def turn(self) -> EngineProcess:
        """Wait in line for the model; the engine may have been swapped while waiting."""
        while True:
            engine = self.engine
            try:
                await engine.turn()
            except Busy as e:
                raise ApiError(503, str(e)) from None
            if engine is self.engine:
                if engine.gone:
                    engine.release_turn()
                    raise ApiError(503, engine.gone)
                return engine
            engine.release_turn()


def error_body(path: str, status: int, message: str) -> dict:
    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
            405: "invalid_request_error", 413: "invalid_request_error", 503: "unavailable_error"}.get(status, "server_error")
    if path.startswith("/v1/"):
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return {"error": {"code": status, "message": message, "type": kind}}


class KeyCheck:
    """Pure ASGI middleware (streams are not buffered): the API key, when one is set, as
    ``Authorization: Bearer KEY`` or ``X-Api-Key: KEY``, compared in constant time."""

    def __init__(self, app, state: State):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        key = self.state.api_key
        if scope["type"] != "http" or key is None or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        headers = {k.decode().lower(): v.decode(errors="replace") for k, v in scope["headers"]}
        given = headers.get("authorization", "").removeprefix("Bearer ").strip() or headers.get("x-api-key", "")
        if hmac.compare_digest(given.encode(), key.encode()):
            return await self.app(scope, receive, send)
        msg = "missing or wrong API key: send it as 'Authorization: Bearer KEY' (cockpit serve printed it)"
        await JSONResponse(error_body(scope["path"], 401, msg), status_code=401)(scope, receive, send)


async def read_json(request: Request, limit: int) -> dict:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body is {declared} bytes; the limit is {limit} (cockpit serve --max-body)")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise ApiError(413, f"request body is over {limit} bytes (cockpit serve --max-body)")
    try:
        data = json.loads(body or b"{}")
    except ValueError as e:
        raise ApiError(400, f"request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


def sse(obj) -> bytes:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n".encode()


async def collect(state: State, request: Request, gen: Generation) -> tuple[list[dict], dict]:
    """A whole generation for a non-streaming request; cancelled if the client goes away."""
    engine = await state.turn()
    msgs: list[dict] = []
    done: dict = {}

    async def run() -> None:
        nonlocal done
        async for m in tokens(engine, gen, lambda: state.stopping):
            if m["type"] == "done":
                done = m
            else:
                msgs.append(m)

    task = asyncio.create_task(run())
    while not task.done():
        await asyncio.wait({task}, timeout=0.1)
        if not task.done() and await request.is_disconnected():
            task.cancel()  # the generation's own cleanup cancels it in the engine
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise ApiError(400, "client disconnected")
    task.result()  # an engine error surfaces here
    return msgs, done


async def started(state: State, engine: EngineProcess, gen: Generation):
    """The generation's first message, awaited before the response starts, so that a request the
    engine refuses (a token id outside the vocabulary) is a 400 and not an error inside a 200 stream."""
    agen = tokens(engine, gen, lambda: state.stopping)
    try:
        first = await agen.__anext__()
    except BaseException:
        await agen.aclose()
        raise
    return first, agen


async def relay(first: dict, agen):
    try:
        yield first
        async for m in agen:
            yield m
    finally:
        await agen.aclose()


async def streamed(state: State, gen: Generation, path: str, token, done, trailer: str | None = None) -> Response:
    """Server-sent events of one generation: ``token(msg)`` per token, ``done(msg, info)`` at the
    end, an engine error in the API's error shape, then ``trailer`` (OpenAI's [DONE])."""
    engine = await state.turn()
    first, agen = await started(state, engine, gen)

    async def events():
        try:
            async for m in relay(first, agen):
                yield sse(done(m, engine.info) if m["type"] == "done" else token(m))
        except EngineError as e:
            yield sse(error_body(path, 503 if isinstance(e, EngineGone) else 400, str(e)))
        if trailer:
            yield sse(trailer)
    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def create_app(state: State) -> Starlette:
    def fail(request: Request, exc: Exception) -> JSONResponse:
        status = exc.status if isinstance(exc, ApiError) else 503 if isinstance(exc, EngineGone) else 400
        return JSONResponse(error_body(request.url.path, status, str(exc)), status_code=status)

    async def page(request: Request) -> Response:
        """Our page: tokens coloured by conviction or probability, alternatives on hover, continue from any of them."""
        return HTMLResponse(resources.files("cockpit.serve").joinpath("page.html").read_text(encoding="utf-8"))

    async def health(request: Request) -> Response:
        """200 `{"status": "ok"}` while the model is loaded; 503 in the error shape when its process is gone."""
        if state.engine.gone:
            return JSONResponse(error_body("/health", 503, state.engine.gone), status_code=503)
        return JSONResponse({"status": "ok"})

    async def props(request: Request) -> Response:
        """llama.cpp's server properties: the model's name, context length and default generation settings."""
        info = state.engine.info
        return JSONResponse({
            "default_generation_settings": {"n_ctx": info.get("block_size"), "params": llama_api.settings(
                llama_api.parse({}, state.limits.max_tokens), info)},
            "total_slots": 1, "model_path": info.get("checkpoint"), "chat_template": "",
            "build_info": "cockpit serve", "cockpit": {**info, "busy": state.engine.busy,
                                                       "waiting": state.engine.waiting, "finished": state.engine.finished,
                                                       "max_tokens": state.limits.max_tokens,
                                                       "key_required": state.api_key is not None}})

    async def tokenize(request: Request) -> Response:
        """llama.cpp's `/tokenize`: `{"content": TEXT}` to `{"tokens": [...]}` (with pieces when asked)."""
        body = await read_json(request, state.limits.max_body)
        content = body.get("content", "")
        if not isinstance(content, str):
            raise BadRequest("content must be a string")
        got = await state.engine.tokenize(content)
        if flag(body, "with_pieces", False):
            return JSONResponse({"tokens": [{"id": i, "piece": p} for i, p in zip(got["tokens"], got["pieces"])]})
        return JSONResponse({"tokens": got["tokens"]})

    async def detokenize(request: Request) -> Response:
        """llama.cpp's `/detokenize`: `{"tokens": [...]}` to `{"content": TEXT}`."""
        body = await read_json(request, state.limits.max_body)
        toks = body.get("tokens", [])
        if not isinstance(toks, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in toks):
            raise BadRequest("tokens must be a list of token ids")
        return JSONResponse({"content": await state.engine.detokenize(toks)})

    async def completion(request: Request) -> Response:
        """llama.cpp's `/completion` (also `/completions`): the generation fields below; streamed as server-sent
        events with `stream`; each token's probabilities and conviction with `n_probs`."""
        gen = llama_api.parse(await read_json(request, state.limits.max_body), state.limits.max_tokens)
        if not gen.stream:
            msgs, done = await collect(state, request, gen)
            extra = {"tokens": [m["token_id"] for m in msgs], "convictions": [m["conviction"] for m in msgs]}
            if gen.n_probs:
                extra["completion_probabilities"] = [llama_api.prob_entry(m, gen.post_sampling_probs) for m in msgs]
            content = "".join(m["token"] for m in msgs)
            return JSONResponse(llama_api.final(done, gen, state.engine.info, content, extra))
        count = itertools.count(1)
        return await streamed(state, gen, "/completion", lambda m: llama_api.chunk(m, gen, next(count)),
                              lambda m, info: llama_api.final(m, gen, info))

    async def v1_completions(request: Request) -> Response:
        """OpenAI's legacy completions: `prompt`, `max_tokens`, `temperature`, `top_p`, `stop`, `seed`, `stream`,
        `logprobs`; errors in OpenAI's shape."""
        gen = openai_api.parse(await read_json(request, state.limits.max_body), state.limits.max_tokens)
        rid, model = openai_api.new_id(), state.engine.info.get("run", "")
        if not gen.stream:
            msgs, done = await collect(state, request, gen)
            return JSONResponse(openai_api.whole(rid, model, msgs, done, gen))
        offset = 0

        def token(m: dict) -> dict:
            nonlocal offset
            out = openai_api.chunk(rid, model, m, gen, offset)
            offset += len(m["token"])
            return out

        return await streamed(state, gen, "/v1/", token, lambda m, info: openai_api.chunk(
            rid, model, None, gen, offset, openai_api.FINISH[m["reason"]]), trailer="[DONE]")

    async def v1_models(request: Request) -> Response:
        """OpenAI's model list: the one run being served."""
        info = state.engine.info
        return JSONResponse({"object": "list", "data": [
            {"id": info.get("run", ""), "object": "model", "created": 0, "owned_by": "cockpit",
             "step": info.get("step"), "conviction": info.get("conviction")}]})

    async def runs(request: Request) -> Response:
        """The runs of the runs directory that have a checkpoint (the page's run picker)."""
        from cockpit.runs import list_runs, run_config

        out = []
        for rd in reversed(list_runs(state.runs_dir)):
            steps = rd.checkpoint_steps()
            if steps:
                cfg = run_config(rd)
                out.append({"id": rd.id, "steps": steps,
                            "conviction": bool(cfg and cfg.conviction.enabled)})
        return JSONResponse({"runs": out, "loaded": state.engine.info})

    async def load(request: Request) -> Response:
        """Switch the served model to another run's checkpoint (`{"run": ID, "step": N}`); a bad one keeps the
        current model."""
        body = await read_json(request, state.limits.max_body)
        run, step = body.get("run"), body.get("step")
        if not isinstance(run, str) or not run:
            raise BadRequest("run must be the id of a run with a checkpoint")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise BadRequest("step must be a checkpoint's step number, or null for the latest")
        from cockpit.runs import RunError, find_run

        try:
            rd = find_run(run, state.runs_dir)
        except RunError as e:
            raise BadRequest(str(e)) from None
        old = await state.turn()
        try:
            new = EngineProcess(rd.path, step, state.limits.max_waiting)
            await new.start()  # the old model keeps serving if this one cannot load
        except EngineGone as e:
            old.release_turn()
            raise BadRequest(str(e)) from None
        state.engine = new
        old.release_turn()
        await old.close()
        return JSONResponse(new.info)

    routes = [
        Route("/", page), Route("/health", health), Route("/props", props),
        Route("/tokenize", tokenize, methods=["POST"]), Route("/detokenize", detokenize, methods=["POST"]),
        Route("/completion", completion, methods=["POST"]), Route("/completions", completion, methods=["POST"]),
        Route("/v1/completions", v1_completions, methods=["POST"]), Route("/v1/models", v1_models),
        Route("/cockpit/runs", runs), Route("/cockpit/load", load, methods=["POST"]),
    ]
    # CORS: front-ends such as mikupad are a page from another origin (often a file)
    middleware = [Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"]),
                  Middleware(KeyCheck, state=state)]
    def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(request.url.path, exc.status_code, f"{exc.detail}: {request.method} "
                                       f"{request.url.path}"), status_code=exc.status_code)

    handlers = {ApiError: fail, BadRequest: fail, EngineError: fail, HTTPException: http_error}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
