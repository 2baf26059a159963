"""The quickstart on a machine other jobs share: the README's first command timed idle and
beside CPU-bound processes (``python3 -c "while 1: pass"``, one per core by default), with the
engine's thread policy (``[train] threads = 0``: the free cores, passive waiting when shared)
and with the policy before it (every core, OpenMP's own spin-then-sleep wait: ``train.threads``
pinned to the core count and GOMP_SPINCOUNT at libgomp's default, which the engine leaves alone). Rounds interleave the four cases, so drift
hits each alike.

    python benchmarks/busy_machine.py [--rounds 2] [--hogs 2] [--config examples/quickstart.toml] [--set K=V ...]

Prints each case's wall clock per round, the medians, and busy / idle for both policies.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quickstart(config: str, runs_dir: Path, sets: list[str], pinned: int | None) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if pinned:  # the policy before: every core, and libgomp's own wait (its documented default spin count)
        env["GOMP_SPINCOUNT"] = "300000"
    cmd = [sys.executable, "-m", "cockpit", "--runs-dir", str(runs_dir), "--headless", "run", config,
           "--set", "log.wandb=false"]
    for s in sets + ([f"train.threads={pinned}"] if pinned else []):
        cmd += ["--set", s]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"the quickstart failed ({out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--hogs", type=int, default=2, help="CPU-bound processes beside the busy runs")
    ap.add_argument("--config", default="examples/quickstart.toml")
    ap.add_argument("--set", action="append", default=[], help="config overrides for every run")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cases = {("idle", "auto"): [], ("busy", "auto"): [], ("idle", "before"): [], ("busy", "before"): []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for (load, policy), times in cases.items():
                hogs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(args.hogs)] \
                    if load == "busy" else []
                try:
                    took = quickstart(args.config, Path(tmp) / f"r{r}-{load}-{policy}", args.set,
                                      cores if policy == "before" else None)
                finally:
                    for h in hogs:
                        h.kill()
                        h.wait()
                times.append(took)
                print(f"round {r + 1}: {load:4} {policy:6} {took:6.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in cases.items()}
    print(f"\n{cores} cores, {args.hogs} CPU-bound processes beside the busy runs, {args.rounds} rounds (median):")
    print("| policy | idle | busy | busy / idle |")
    print("|---|---|---|---|")
    for policy, label in (("before", f"every core, spinning (threads = {cores})"), ("auto", "threads = 0 (auto)")):
        i, b = med[("idle", policy)], med[("busy", policy)]
        print(f"| {label} | {i:.1f} s | {b:.1f} s | {b / i:.2f}x |")


if __name__ == "__main__":
    main()
