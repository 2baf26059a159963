"""The HTTP side: a Starlette app over one EngineProcess.

Routes: our page at ``/``; llama.cpp's ``/completion``, ``/tokenize``, ``/detokenize``,
``/health``, ``/props``; OpenAI's ``/v1/completions``, ``/v1/chat/completions``, ``/v1/models``
(and one model), with the token-count routes front-ends use in OpenAI mode; and ``/cockpit/runs``
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
from cockpit.serve.chat import Template
from cockpit.serve.engine_proc import Busy, EngineError, EngineGone, EngineProcess
from cockpit.serve.params import BadRequest, Generation, flag
from cockpit.serve.stream import tokens

OPEN_PATHS = {"/", "/health"}  # reachable without the key: the page asks for it itself


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


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


def error_body(path: str, status: int, message: str, code: str | None = None, param: str | None = None) -> dict:
    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
            405: "invalid_request_error", 413: "invalid_request_error", 503: "unavailable_error"}.get(status, "server_error")
    if path.startswith("/v1/"):
        if code == "model_not_found":
            kind = "invalid_request_error"  # OpenAI's own type for it
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}
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


async def streamed(state: State, gens: list[Generation], path: str, make_fmt, end=None,
                   trailer: str | None = None) -> Response:
    """Server-sent events of one or more generations, one after another. ``make_fmt(i, info)``
    gives choice i's formatter, which turns each message (prompt, token, done) into the events
    to send; ``end()`` the events after the last choice (OpenAI's usage chunk), then ``trailer``
    (OpenAI's [DONE]). The first generation's first message is awaited before the response
    starts, so a request the engine refuses is a 400; a later engine error is an event in the
    API's error shape."""
    engine = await state.turn()
    first, agen = await started(state, engine, gens[0])

    async def events():
        try:
            for i, gen in enumerate(gens):
                eng = engine
                if i > 0:
                    eng = await state.turn()
                    it = tokens(eng, gen, lambda: state.stopping)
                else:
                    it = relay(first, agen)
                fmt = make_fmt(i, eng.info)
                async with contextlib.aclosing(it) as messages:
                    async for m in messages:
                        for obj in fmt(m):
                            yield sse(obj)
            for obj in (end() if end else []):
                yield sse(obj)
        except (EngineError, ApiError) as e:
            status = e.status if isinstance(e, ApiError) else 503 if isinstance(e, EngineGone) else 400
            yield sse(error_body(path, status, str(e)))
        if trailer:
            yield sse(trailer)
    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def check_model(body: dict, info: dict) -> None:
    """OpenAI answers an unknown model with 404 model_not_found; an absent or empty name is this one."""
    model = body.get("model")
    if model in (None, "") or model == info.get("run"):
        return
    raise ApiError(404, f"the model {model!r} does not exist: this server serves {info.get('run')!r} "
                        f"(GET /v1/models)", code="model_not_found", param="model")


def create_app(state: State) -> Starlette:
    def fail(request: Request, exc: Exception) -> JSONResponse:
        status = exc.status if isinstance(exc, ApiError) else 503 if isinstance(exc, EngineGone) else 400
        code, param = (exc.code, exc.param) if isinstance(exc, ApiError) else (None, None)
        return JSONResponse(error_body(request.url.path, status, str(exc), code, param), status_code=status)

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
        body = await read_json(request, state.limits.max_body)
        gen = llama_api.parse(body, state.limits.max_tokens)
        fields = llama_api.response_fields(body)
        if not gen.stream:
            msgs, done = await collect(state, request, gen)
            extra = {"tokens": [m["token_id"] for m in msgs], "convictions": [m["conviction"] for m in msgs]}
            if gen.n_probs:
                extra["completion_probabilities"] = [llama_api.prob_entry(m, gen.post_sampling_probs) for m in msgs]
            content = "".join(m["token"] for m in msgs)
            return JSONResponse(llama_api.only(llama_api.final(done, gen, state.engine.info, content, extra), fields))

        def make_fmt(i: int, info: dict):
            count = itertools.count(1)

            def fmt(m: dict) -> list[dict]:
                if m["type"] == "done":
                    return [llama_api.only(llama_api.final(m, gen, info), fields)]
                return [llama_api.chunk(m, gen, next(count))]
            return fmt
        return await streamed(state, [gen], "/completion", make_fmt)

    async def prompt_chars(gen: Generation) -> int:
        """The prompt's length in characters: OpenAI's text_offset counts from the prompt's start."""
        if isinstance(gen.prompt, str):
            return len(gen.prompt)
        return len(await state.engine.detokenize(gen.prompt))

    async def whole(request: Request, req: openai_api.Request, choice_of) -> list[dict]:
        """The choices of a request that does not stream, generated one after another."""
        out = []
        for i, gen in enumerate(req.choices):
            msgs, done = await collect(state, request, gen)
            out.append(choice_of(i, msgs, done))
        return out

    async def v1_completions(request: Request) -> Response:
        """OpenAI's legacy completions: `prompt` (one, or a batch), `n`, `max_tokens`, `temperature`, `top_p`, `stop`,
        `seed`, `stream` (with `stream_options.include_usage`), `logprobs`, `echo`, the penalties and `logit_bias`;
        errors in OpenAI's shape."""
        body = await read_json(request, state.limits.max_body)
        check_model(body, state.engine.info)
        req = openai_api.parse(body, state.limits.max_tokens)
        reply = openai_api.Reply(req, state.engine.info.get("run", ""), chat=False)
        per_prompt = [await prompt_chars(g) for g in req.choices[::req.n]]  # n choices share a prompt
        offsets = [per_prompt[i // req.n] for i in range(len(req.choices))]
        if not req.stream:
            choices = await whole(request, req, lambda i, msgs, done: reply.completion_choice(i, offsets[i], msgs, done))
            return JSONResponse(reply.whole(choices))
        return await streamed(state, req.choices, "/v1/", lambda i, info: reply.completion_stream(i, offsets[i]),
                              reply.end, trailer="[DONE]")

    async def v1_chat(request: Request) -> Response:
        """OpenAI's chat completions for clients that speak only chat: the messages become one prompt through the
        run's `[serve]` template (role-prefixed lines); `n`, `stream`, `stop`, `logprobs`/`top_logprobs`,
        `response_format` (JSON through the grammar), the penalties; conviction per token as on the completion
        routes."""
        body = await read_json(request, state.limits.max_body)
        info = state.engine.info
        check_model(body, info)
        req = openai_api.parse_chat(body, state.limits.max_tokens, Template.from_info(info))
        reply = openai_api.Reply(req, info.get("run", ""), chat=True)
        if not req.stream:
            return JSONResponse(reply.whole(await whole(request, req, reply.chat_choice)))
        return await streamed(state, req.choices, "/v1/", lambda i, info: reply.chat_stream(i), reply.end,
                              trailer="[DONE]")

    async def v1_models(request: Request) -> Response:
        """OpenAI's model list: the one run being served, with its context length (`meta.n_ctx_train`,
        `max_model_len`)."""
        return JSONResponse({"object": "list", "data": [openai_api.model_card(state.engine.info)]})

    async def v1_model(request: Request) -> Response:
        """OpenAI's model retrieval: the served run by its id; any other id is a 404 `model_not_found`."""
        model = request.path_params["model"]
        check_model({"model": model}, state.engine.info)
        return JSONResponse(openai_api.model_card(state.engine.info))

    async def token_encode(request: Request) -> Response:
        """Token counting for front-ends in OpenAI mode: `{"text": TEXT}` to `{"tokens": [...], "length": n}`
        (tabbyAPI's `/v1/token/encode`, text-generation-webui's `/v1/internal/encode` and
        `/v1/internal/token-count`)."""
        body = await read_json(request, state.limits.max_body)
        text = body.get("text", body.get("prompt", ""))
        if not isinstance(text, str):
            raise BadRequest("text must be a string")
        ids = (await state.engine.tokenize(text))["tokens"] if text else []
        return JSONResponse({"tokens": ids, "length": len(ids)})

    async def token_decode(request: Request) -> Response:
        """`{"tokens": [...]}` to `{"text": TEXT}` (tabbyAPI's `/v1/token/decode`)."""
        body = await read_json(request, state.limits.max_body)
        toks = body.get("tokens", [])
        if not isinstance(toks, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in toks):
            raise BadRequest("tokens must be a list of token ids")
        return JSONResponse({"text": await state.engine.detokenize(toks)})

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
        Route("/v1/completions", v1_completions, methods=["POST"]),
        Route("/v1/chat/completions", v1_chat, methods=["POST"]),
        Route("/v1/models", v1_models), Route("/v1/models/{model:path}", v1_model),
        Route("/v1/token/encode", token_encode, methods=["POST"]),
        Route("/v1/internal/encode", token_encode, methods=["POST"]),
        Route("/v1/internal/token-count", token_encode, methods=["POST"]),
        Route("/v1/token/decode", token_decode, methods=["POST"]),
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
