"""What T12's auxiliary losses cost: training tokens/s of examples/t12/enwik8_t12.toml's model
with the losses (all 11 intermediate layers active, as at the start of training, and one extra
target) against the same model without them, timed in the same process, rounds alternating so
drift hits both. Target: the auxiliary run keeps at least 75% of the plain run's tokens/s.

    python benchmarks/aux_overhead.py [--config examples/t12/enwik8_t12.toml] [--batch 2]
        [--rounds 3] [--steps 3] [--device auto] [--set KEY=VALUE ...]

The data is the built-in corpus (the shape is what matters); on a CPU use a small batch.
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="examples/t12/enwik8_t12.toml")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--set", action="append", default=[])
    a = p.parse_args()
    common = ["data.path=builtin:stories", "data.raw_bytes=false", "data.val_tokens=0", "data.test_tokens=0",
              f"train.batch_size={a.batch}", f"train.device={a.device}", "model.dropout=0.0"]
    if not torch.cuda.is_available():
        common.append("train.precision=fp32")  # CPUs emulate bf16 matmuls slowly
    common += a.set
    cfgs = {
        "plain": load_config(a.config, common + ["aux.intermediate=false", "aux.targets=0"]),
        "t12 aux": load_config(a.config, common + ["aux.schedule=constant"]),  # every layer active: the worst case
    }
    trainers = {name: Trainer(cfg, log=lambda m: None) for name, cfg in cfgs.items()}
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for tr in trainers.values():
        tr.train_step()  # warm-up (allocator, first-call work)
    for _ in range(a.rounds):
        for name, tr in trainers.items():
            for _ in range(a.steps):
                sync(tr.device)
                t0 = time.perf_counter()
                tr.train_step()
                sync(tr.device)
                times[name].append(time.perf_counter() - t0)
    tokens = cfgs["plain"].tokens_per_step
    tr = trainers["t12 aux"]
    s = tr.summary()
    print(f"{s['model']} on {s['device']} ({s['precision']}), batch {a.batch} × {cfgs['plain'].model.block_size}; "
          f"aux classifiers {s['params_aux']:,} of {s['params']:,} parameters; torch {torch.__version__}")
    base = None
    for name, ts in times.items():
        med = statistics.median(ts)
        tok_s = tokens / med
        base = base or tok_s
        print(f"  {name:8} {tok_s:>10,.0f} tokens/s  median step {1000 * med:8.1f} ms  {tok_s / base:.2f}× plain")
    return 0


if __name__ == "__main__":
    sys.exit(main())
