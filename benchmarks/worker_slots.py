"""A queue drained by `cockpit worker --once --slots 2` against `--slots 1`, on this machine's
CPU, in one sitting (rounds alternate, so a busy spell hits both).

    python benchmarks/worker_slots.py [--runs 4] [--steps 150] [--rounds 2]

Each round queues the same small runs (the quickstart's shape, no evaluation) in a fresh runs
directory and times the worker from start to exit. Small models leave cores idle in one
process (a decode-sized matmul does not spread over threads); two slots give each run half the
cores. Prints the wall time of each and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def drain(slots: int, runs: int, steps: int) -> float:
    with tempfile.TemporaryDirectory(prefix="slots-") as tmp:
        runs_dir = Path(tmp) / "runs"
        sets = [f"train.max_steps={steps}", "train.checkpoint_every=0", "eval.every=0", "eval.final=false",
                "eval.sample_tokens=0", "log.wandb=false"]
        args = [a for s in sets for a in ("--set", s)]
        for i in range(runs):
            subprocess.run([sys.executable, "-m", "cockpit", "--runs-dir", str(runs_dir), "queue", "add",
                            str(ROOT / "examples/quickstart.toml"), "--name", f"r{i}", *args], check=True,
                           capture_output=True)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "cockpit", "--runs-dir", str(runs_dir), "worker", "--once",
                            "--slots", str(slots)], capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        if r.returncode != 0 or r.stdout.count(": completed") != runs:
            raise SystemExit(f"the worker did not complete every run:\n{r.stdout}\n{r.stderr}")
        return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(a.rounds):
        for slots in (1, 2):
            times[slots].append(drain(slots, a.runs, a.steps))
            print(f"  --slots {slots}: {times[slots][-1]:.1f} s", file=sys.stderr)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"{a.runs} quickstart-shaped runs of {a.steps} steps, CPU, median of {a.rounds} rounds")
    print(f"  --slots 1: {one:.1f} s   --slots 2: {two:.1f} s   ratio slots-2 / slots-1: {two / one:.2f}")


if __name__ == "__main__":
    main()
