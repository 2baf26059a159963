"""Throughput and MFU on a GPU, as one table: the sweep presets' shapes (10M, 25M, 100M) in each
precision with and without ``torch.compile``, then the zoo's attention and feed-forward kinds
at the 25M shape against its baseline (step time ratio). Each row is its own
``python -m engine bench --json`` process, so one row's compile caches and allocator do not
colour the next, and a row that fails (out of memory, a kind that does not compile) is printed
as failed while the rest go on.

    python benchmarks/gpu_mfu.py [--text PATH/TO/input.txt] [--steps 30] [--warmup 15]
        [--precisions bf16,fp16] [--compile both|on|off] [--no-kinds] [--device cuda]

MFU is against the GPU's data-sheet dense bf16/fp16 peak (engine/device.py); on a CPU
(``--device cpu --tiny``, a check that the script runs) it is against the measured matmul peak
and the shapes are shrunk, so its figures say nothing about a GPU. Needs the gpt2 encoding
(``TIKTOKEN_CACHE_DIR`` offline), as ``examples/bench/gpu_100m.toml`` says.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import tomli_w

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoo.registry import FAMILIES  # noqa: E402

CONFIG = ROOT / "examples" / "bench" / "gpu_100m.toml"


@dataclass(frozen=True)
class Shape:
    name: str
    n_layer: int
    d_model: int
    n_head: int
    batch: int
    block: int = 1024

    def overrides(self) -> list[str]:
        return [f"model.n_layer={self.n_layer}", f"model.d_model={self.d_model}", f"model.n_head={self.n_head}",
                f"train.batch_size={self.batch}", f"model.block_size={self.block}"]


SHAPES = [Shape("10M: 4 x 256", 4, 256, 4, 64), Shape("25M: 4 x 512", 4, 512, 8, 64),
          Shape("100M: 12 x 768", 12, 768, 12, 32)]
TINY = [Shape("tiny: 2 x 64", 2, 64, 2, 4, 128), Shape("small: 2 x 128", 2, 128, 4, 4, 128)]


def bench(overrides: list[str], steps: int, warmup: int) -> dict:
    """One row: the engine's own bench in a fresh process; {"error": ...} when it fails."""
    cmd = [sys.executable, "-m", "engine", "bench", str(CONFIG), "--steps", str(steps), "--warmup", str(warmup),
           "--json"] + [a for o in overrides for a in ("--set", o)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        return {"error": lines[-1][:120] if lines else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def toml_value(v: object) -> str:
    """A value as --set reads it (TOML): "mha", true, 256."""
    return tomli_w.dumps({"v": v}).split("=", 1)[1].strip()


def kind_rows(d_model: int, block: int) -> list[tuple[str, list[str]]]:
    """Every attention and feed-forward kind's own bench variants, as --set overrides."""
    rows = []
    for family in ("attention", "ffn"):
        for cls in FAMILIES[family].values():
            for name, table in cls.bench_variants(d_model, block):
                rows.append((f"{family} {name}", [f"model.{family}.{k}={toml_value(v)}" for k, v in table.items()]))
    return rows


def fmt(r: dict, baseline_ms: float | None = None) -> str:
    if "error" in r:
        return f"failed: {r['error']}"
    ratio = f"   {r['median_step_ms'] / baseline_ms:.2f}x baseline" if baseline_ms else ""
    return (f"{r['tokens_per_s']:>12,.0f} tok/s  {r['median_step_ms']:>8.1f} ms  MFU {100 * r['mfu']:5.1f}%  "
            f"peak {r['peak_memory_mb']:>8,.0f} MB{ratio}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--text", default=None, help="the corpus (default: the config's builtin stories)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--precisions", default="bf16,fp16")
    ap.add_argument("--compile", choices=["both", "on", "off"], default="both")
    ap.add_argument("--no-kinds", action="store_true", help="skip the zoo kinds at the 25M shape")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="shrunk shapes: a check that the script runs on a CPU")
    args = ap.parse_args()

    common = [f"train.device={args.device}"] + ([f"data.path={args.text}"] if args.text else [])
    compiles = {"both": [True, False], "on": [True], "off": [False]}[args.compile]
    shapes = TINY if args.tiny else SHAPES
    print(f"{'shape':<18} {'precision':<9} {'compile':<8} result", flush=True)
    for shape in shapes:
        for precision in args.precisions.split(","):
            for compiled in compiles:
                r = bench(common + shape.overrides() + [f"train.precision={precision}",
                                                        f"train.compile={str(compiled).lower()}"],
                          args.steps, args.warmup)
                print(f"{shape.name:<18} {precision:<9} {'yes' if compiled else 'no':<8} {fmt(r)}", flush=True)
    if args.no_kinds:
        return
    shape = shapes[min(1, len(shapes) - 1)]
    precision = args.precisions.split(",")[0]
    base = common + shape.overrides() + [f"train.precision={precision}", f"train.compile={str(compiles[0]).lower()}"]
    print(f"\nthe zoo at {shape.name}, {precision}, compile {'on' if compiles[0] else 'off'}:", flush=True)
    baseline = bench(base, args.steps, args.warmup)
    print(f"{'baseline (config)':<34} {fmt(baseline)}", flush=True)
    baseline_ms = baseline.get("median_step_ms")
    for name, overrides in kind_rows(shape.d_model, shape.block):
        print(f"{name:<34} {fmt(bench(base + overrides, args.steps, args.warmup), baseline_ms)}", flush=True)


if __name__ == "__main__":
    main()
