"""``cockpit serve RUN``: load the run's model once and serve it over HTTP (uvicorn)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import signal
import socket
import sys
from pathlib import Path

from cockpit.args import non_negative_int, positive_int


def register(sub) -> None:
    s = sub.add_parser("serve", help="serve a run's model over HTTP: llama.cpp and OpenAI APIs with conviction, "
                                     "and a page at /")
    s.add_argument("run", help="run id, unique id prefix, run directory, or an exported .pt file")
    s.add_argument("--step", type=non_negative_int, default=None, help="checkpoint step (default: the latest)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only; any other needs a key)")
    s.add_argument("--port", type=port_number, default=8080, help="0: any free port")
    s.add_argument("--api-key", default=None,
                   help="required from clients (default: $COCKPIT_API_KEY; generated and printed when --host "
                        "is not loopback)")
    s.add_argument("--max-tokens", type=positive_int, default=4096, help="most tokens one request may ask for")
    s.add_argument("--max-body", type=positive_int, default=1 << 20, help="largest request body, in bytes")
    s.add_argument("--queue", type=positive_int, default=8, help="requests that may wait for the model before 503")
    s.set_defaults(func=main)


def port_number(text: str) -> int:
    import argparse

    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: use 0 to 65535 (0: any free port)")
    return port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == 98:
            raise SystemExit(f"error: {host}:{port} is in use; choose another with --port (0: any free port)") from None
        raise SystemExit(f"error: cannot bind {host}:{port} ({e.strerror}); --host must be an address of this "
                         f"machine (0.0.0.0: all of them)") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def main(args) -> int:
    from cockpit.runs import find_run, runs_root
    from cockpit.serve.app import Limits

    runs_dir = runs_root(args.runs_dir)
    target = Path(args.run)
    if not target.is_file():
        target = find_run(args.run, runs_dir).path
    key = args.api_key or os.environ.get("COCKPIT_API_KEY") or None
    if key is None and not is_loopback(args.host):
        key = secrets.token_urlsafe(24)
    limits = Limits(max_tokens=args.max_tokens, max_body=args.max_body, max_waiting=args.queue)
    sock = bind(args.host, args.port)
    try:
        return asyncio.run(_serve(target, args.step, runs_dir, sock, limits, key, args.host))
    except KeyboardInterrupt:
        return 130


async def _serve(target: Path, step: int | None, runs_dir: Path, sock: socket.socket, limits,
                 key: str | None, host: str) -> int:
    import uvicorn

    from cockpit.serve.app import State, create_app
    from cockpit.serve.engine_proc import EngineGone, EngineProcess

    print(f"loading {target.name}{f' step {step}' if step is not None else ''} ...", file=sys.stderr, flush=True)
    engine = EngineProcess(target, step, limits.max_waiting)
    try:
        info = await engine.start()
    except EngineGone as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    state = State(runs_dir, engine, limits, key)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            # SIGTERM / Ctrl-C: running generations end at their next token, the engine is let go,
            # and the process exits 0 ("stopped") rather than re-raising the signal as uvicorn would
            state.stopping = True
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

    config = uvicorn.Config(create_app(state), log_level="warning", timeout_graceful_shutdown=5,
                            lifespan="off", access_log=False)
    server = Server(config)
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    conviction = "with conviction" if info.get("conviction") else "no conviction head"
    print(f"serving {info['run']} step {info['step']} ({conviction}) at {url}", flush=True)
    print(f"  llama.cpp: {url}completion   OpenAI: {url}v1   page: {url}{'#key=' + key if key else ''}", flush=True)
    if key:
        print(f"  API key: {key}  (send 'Authorization: Bearer {key}')", flush=True)
    print("  Ctrl-C or SIGTERM stops", flush=True)
    try:
        await server.serve(sockets=[sock])
    finally:
        await state.engine.close()
    print("stopped", flush=True)
    return 0
