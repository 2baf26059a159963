"""How much of each training step waits for its batches: batches built in the step
(``train.prefetch = 0``, the pipeline before) against batches built ahead in a background
thread (``prefetch = 2``), timed in the same process, rounds alternating so drift hits both.

    python benchmarks/input_pipeline.py [--config examples/bench/nanogpt_cpu.toml]
        [--rounds 3] [--steps 30] [--set data.path=PATH/TO/tinyshakespeare/input.txt]

Prints, for each, the median share of step time spent waiting for data and the step time.
On a GPU the step is asynchronous, so a wait the host does not hide shows as idle device;
on a CPU the data thread shares the cores with the step, so the gain is smaller there.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.device import sync  # noqa: E402
from engine.trainer import Trainer  # noqa: E402
from runspec.config.load import load_config  # noqa: E402


def measure(trainer: Trainer, steps: int) -> tuple[float, float]:
    """(share of the time waiting for batches, median step ms) over ``steps`` steps."""
    trainer.train_step()  # warm-up (and the prefetcher's first fill)
    sync(trainer.device)
    trainer.batches.take_waited()
    times = []
    t0 = time.perf_counter()
    for _ in range(steps):
        s = time.perf_counter()
        trainer.train_step()
        sync(trainer.device)
        times.append(time.perf_counter() - s)
    total = time.perf_counter() - t0
    return trainer.batches.take_waited() / total, 1000 * statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(Path(__file__).resolve().parent.parent / "examples/bench/nanogpt_cpu.toml"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = p.parse_args()
    cfg = load_config(args.config, args.set)
    results: dict[int, list[tuple[float, float]]] = {0: [], 2: []}
    for r in range(args.rounds):
        for depth in (0, 2) if r % 2 == 0 else (2, 0):
            cfg.train.prefetch = depth
            trainer = Trainer(cfg, log=lambda m: None)
            results[depth].append(measure(trainer, args.steps))
            trainer.batches.close()
    print(f"{args.config}: batch {cfg.train.batch_size} x {cfg.model.block_size} tokens, "
          f"{args.rounds} rounds of {args.steps} steps, device {trainer.device}, torch threads {torch.get_num_threads()}")
    for depth, label in ((0, "built in the step (before)"), (2, "built ahead, prefetch 2 (after)")):
        wait = statistics.median(x[0] for x in results[depth])
        ms = statistics.median(x[1] for x in results[depth])
        print(f"  {label:34s} waiting for data {wait:6.2%} of step time   step {ms:8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
