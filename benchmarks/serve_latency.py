"""HTTP streaming from `cockpit serve` against the JSON-lines pipe it wraps, for the quickstart
model on CPU, measured in the same run, requests alternating between the two.

    python benchmarks/serve_latency.py [--run RUN_DIR] [--tokens 256] [--repeats 7]

Without --run, a quickstart-shaped run is created and trained for 20 steps (speed depends on
the shape, not on the weights). For each path: the median time from sending a request to
reading its first token, and the median streaming rate. Targets: HTTP first token under 50 ms
and at least 90% of the pipe's tokens/s (the pipe is what `cockpit complete` reads), also with
the penalties mikupad sends on every request (repeat_penalty 1.1 over 64 tokens, presence and
frequency penalties) on the HTTP side only. With --grammar, a GBNF grammar's cost per token.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from completion_latency import pipe_once, quickstart_run  # noqa: E402

PROMPT = "Once upon a time"  # as completion_latency.pipe_once sends


def pipe_rate(proc, i: int, tokens: int) -> tuple[float, float]:
    t0, first, end, n = pipe_once(proc, i, tokens, temperature=0.8, top_k=50)
    return first - t0, n / (end - t0)


PENALTIES = {"repeat_penalty": 1.1, "repeat_last_n": 64, "presence_penalty": 0.2, "frequency_penalty": 0.2}
GRAMMAR = {"grammar": 'root ::= [a-zA-Z ,.\n]+'}  # never done before the token limit: every request runs its length


def http_once(port: int, i: int, tokens: int, extra: dict | None = None) -> tuple[float, float]:
    body = {"prompt": PROMPT, "n_predict": tokens, "seed": i, "temperature": 0.8, "top_k": 50, "top_p": 1,
            "min_p": 0, "stream": True, **(extra or {})}
    c = http.client.HTTPConnection("127.0.0.1", port)
    t0 = time.perf_counter()
    c.request("POST", "/completion", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    first, n = None, 0
    while line := r.readline():
        if line.startswith(b"data: "):
            msg = json.loads(line[6:])
            if msg.get("stop"):
                break
            n += 1
            first = first or time.perf_counter()
    end = time.perf_counter()
    c.close()
    return first - t0, n / (end - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=None)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--grammar", action="store_true", help="also stream under a GBNF grammar")
    args = ap.parse_args()
    run = Path(args.run) if args.run else quickstart_run(Path(tempfile.mkdtemp()))
    pipe = subprocess.Popen([sys.executable, "-m", "engine", "complete", str(run)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1)
    json.loads(pipe.stdout.readline())
    server = subprocess.Popen([sys.executable, "-m", "cockpit", "serve", str(run), "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    port = int(line.split(" at ")[1].strip().rstrip("/").rsplit(":", 1)[1])
    results: dict[str, list[tuple[float, float]]] = {"pipe": [], "http": [], "http+penalties": []}
    if args.grammar:
        results["http+grammar"] = []
    try:
        http_once(port, 0, 8)  # the first HTTP connection's set-up is not what a client waits for each time
        for i in range(args.repeats):  # alternate, so a busy spell on the machine hits both
            results["pipe"].append(pipe_rate(pipe, i, args.tokens))
            results["http"].append(http_once(port, i, args.tokens))
            results["http+penalties"].append(http_once(port, i, args.tokens, PENALTIES))
            if args.grammar:
                results["http+grammar"].append(http_once(port, i, args.tokens, GRAMMAR))
    finally:
        pipe.stdin.write('{"op": "quit"}\n')
        pipe.stdin.flush()
        pipe.wait()
        server.send_signal(signal.SIGTERM)
        server.wait()
    med = {k: (statistics.median(f for f, _ in v) * 1000, statistics.median(r for _, r in v))
           for k, v in results.items()}
    print(f"quickstart model, {args.tokens} tokens per request, {args.repeats} requests each, CPU")
    for k in results:
        print(f"  {k:15s} first token {med[k][0]:6.1f} ms   {med[k][1]:6.0f} tokens/s")
    ratio = med["http"][1] / med["pipe"][1]
    print(f"  HTTP / pipe tokens/s: {ratio:.1%} (target >= 90%);  HTTP first token {med['http'][0]:.1f} ms "
          f"(target < 50 ms)")
    print(f"  HTTP with penalties / pipe tokens/s: {med['http+penalties'][1] / med['pipe'][1]:.1%} (target >= 90%)")
    if args.grammar:
        cost = 1000 / med["http+grammar"][1] - 1000 / med["http"][1]
        print(f"  grammar: {med['http+grammar'][1] / med['http'][1]:.1%} of HTTP's tokens/s, {cost:+.3f} ms per token")


if __name__ == "__main__":
    main()
