"""Completion latency of the quickstart model on CPU, through the real completion process
(`python -m engine complete RUN_DIR`, JSON lines over pipes), as the CLI and TUI use it.

    python benchmarks/completion_latency.py [--run RUN_DIR] [--tokens 256] [--repeats 5]

Without --run, a quickstart-shaped run is created and trained for 20 steps (latency depends on
the shape, not on the weights). Prints the median time from sending a request to reading its
first token, and the streaming rate. Targets: first token < 50 ms, >= 200 tokens/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cockpit.runs import create_run  # noqa: E402


def quickstart_run(root: Path) -> Path:
    rd = create_run("examples/quickstart.toml", ["train.max_steps=20", "log.wandb=false", "eval.every=0"],
                    name="latency", runs_dir=root)
    subprocess.run([sys.executable, "-m", "engine", "train", str(rd.path)], check=True, capture_output=True)
    return rd.path


def pipe_once(proc, i: int, tokens: int, **sampling) -> tuple[float, float, float, int]:
    """One request through the completion process: (sent, first token, done) times and the count."""
    req = {"op": "generate", "id": i, "prompt": "Once upon a time", "max_tokens": tokens, "seed": i, **sampling}
    t0 = time.perf_counter()
    proc.stdin.write(json.dumps(req) + "\n")
    proc.stdin.flush()
    first, n = None, 0
    while True:
        msg = json.loads(proc.stdout.readline())
        if msg["type"] == "token":
            n += 1
            first = first or time.perf_counter()
        elif msg["type"] in ("done", "error"):
            return t0, first, time.perf_counter(), n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=None)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    run = Path(args.run) if args.run else quickstart_run(Path(tempfile.mkdtemp()))
    proc = subprocess.Popen([sys.executable, "-m", "engine", "complete", str(run)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1)
    ready = json.loads(proc.stdout.readline())
    firsts, rates = [], []
    for i in range(args.repeats):
        t0, first, end, n = pipe_once(proc, i, args.tokens)
        firsts.append(first - t0)
        rates.append((n - 1) / (end - first) if n > 1 else float("nan"))
    proc.stdin.close()
    proc.wait()
    print(f"run {ready['run']} ({ready['device']}), {args.repeats} requests of {args.tokens} tokens")
    print(f"first token: median {1000 * statistics.median(firsts):.1f} ms (target < 50 ms)")
    print(f"streaming:   median {statistics.median(rates):.0f} tokens/s (target >= 200)")


if __name__ == "__main__":
    main()
