"""``python -m engine bench CONFIG --steps N [--json]``: training throughput on the real step.

Warm-up steps (compilation, allocator, caches) are run first and not timed; then each step is
timed with a device sync, and the median is reported. Start-up (imports, tokenizing, model
build) is never in the figures."""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time

from engine.device import sync
from runspec.config.load import load_config


def bench(config_path: str, steps: int, warmup: int, overrides: list[str]) -> dict:
    from engine.trainer import Trainer

    import torch

    cfg = load_config(config_path, overrides)
    trainer = Trainer(cfg, log=lambda m: None)
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    for _ in range(warmup):
        trainer.train_step()
    sync(trainer.device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step()
        sync(trainer.device)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    tok_s = trainer.tokens_per_step / med  # one process: a config's gpus do not count here
    s = trainer.summary()
    return {
        "config": config_path,
        "device": s["device"],
        "precision": s["precision"],
        "compile": s["compile"],
        "params": s["params"],
        "params_non_embedding": s["params_non_embedding"],
        "tokens_per_step": trainer.tokens_per_step,
        "steps": steps,
        "warmup_steps": warmup,
        "median_step_ms": 1000 * med,
        "mean_step_ms": 1000 * statistics.fmean(times),
        "tokens_per_s": tok_s,
        "mfu": tok_s * s["flops_per_token"] / s["peak_flops"],
        "peak_source": s["peak_source"],
        "peak_memory_mb": peak_memory_mb(trainer.device),
    }


def peak_memory_mb(device) -> float:
    """The most memory the steps held: the GPU's allocator peak, or on a CPU the process's peak
    resident set (which includes torch itself and the data)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def format_result(r: dict) -> str:
    return (f"{r['config']}: {r['params']:,} params on {r['device']} ({r['precision']}"
            f"{', compiled' if r['compile'] else ''})\n"
            f"  {r['tokens_per_s']:,.0f} tokens/s   median step {r['median_step_ms']:.2f} ms   "
            f"MFU {100 * r['mfu']:.1f}% ({r['peak_source']})   peak memory {r['peak_memory_mb']:,.0f} MB   "
            f"[{r['steps']} timed steps after {r['warmup_steps']} warm-up]")


def main(args) -> int:
    r = bench(args.config, args.steps, args.warmup if args.warmup is not None else max(3, args.steps // 4),
              args.set or [])
    print(json.dumps(r) if args.json else format_result(r), flush=True)
    return 0
