"""Beyond one window on a CPU: the plain model against Transformer-XL, the compressive memory
and the hourglass, at equal parameters (the hourglass pools by mean, the compressive row with a
mean adds nothing; the conv row adds its compression network) and equal training tokens, on
tinyshakespeare. The runs go through the product itself: ``cockpit queue add`` of
``examples/memory/cpu_*.toml``, one ``cockpit worker --once``, then the table is read from the
run directories (each run's final pass: per window, sliding windows, and with the memory
carried over the split; tokens/s is the median of its logged intervals).

    python benchmarks/memory_table.py PATH/TO/tinyshakespeare/input.txt [--steps 1500] [--runs-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runspec.run import events  # noqa: E402
from runspec.run.rundir import RunDir  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from product import cockpit  # noqa: E402

RUNS = [  # (name, config, extra overrides)
    ("plain", "cpu_plain.toml", []),
    ("xl", "cpu_xl.toml", []),
    ("compressive-mean", "cpu_compressive.toml", ["model.memory.compress=mean"]),
    ("compressive-conv", "cpu_compressive.toml", []),
    ("hourglass", "cpu_hourglass.toml", []),
]


def row(rd: RunDir) -> dict:
    evs = list(events.read_events(rd.events))
    start = next(e for e in evs if e.kind == events.START)
    final = next(e for e in evs if e.kind == events.FINAL).metrics
    speeds = [e.metrics["train/tokens_per_s"] for e in evs if e.kind == events.STEP and "train/tokens_per_s" in e.metrics]
    return {"label": start.get("label"), "params": start.get("params"), "tokens": start.get("tokens_per_step", 0),
            "final": final, "tok_s": statistics.median(speeds) if speeds else None,
            "flops": start.get("flops_per_token")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("text", help="tinyshakespeare's input.txt")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--runs-dir", default=None, help="where the runs go (default: a temporary directory)")
    ap.add_argument("--only", action="append", default=[], help="train only these rows (the newest run of each "
                                                                 "other row in --runs-dir is read as it is)")
    args = ap.parse_args()
    runs_dir = Path(args.runs_dir or tempfile.mkdtemp(prefix="memory-table-"))
    for name, config, extra in RUNS:
        if args.only and name not in args.only:
            continue
        sets = [f"data.path={Path(args.text).resolve()}", f"train.max_steps={args.steps}", *extra]
        cockpit(runs_dir, "queue", "add", str(ROOT / "examples/memory" / config),
                "--name", f"mem-{name}", *[x for s in sets for x in ("--set", s)])
    print(f"training {len(args.only) or len(RUNS)} runs in {runs_dir} ...", flush=True)
    cockpit(runs_dir, "worker", "--once")
    print(f"\n{args.steps} steps each, batch 16 x 64 tokens, bytes; validation: the last 10% of the file\n")
    print("| run | model | parameters | per window (bpc) | sliding, stride 16 (bpc) | memory carried (bpc) "
          "| tokens/s |")
    print("|---|---|---|---|---|---|---|")
    for name, _, _ in RUNS:
        rd = RunDir(max(runs_dir.glob(f"mem-{name}-2*")))  # the newest
        r = row(rd)
        f = r["final"]

        def bpc(key: str) -> str:
            v = f.get(f"final_benchmarks/{key}")
            return f"{v:.4f}" if v is not None else "-"

        print(f"| {name} | {r['label']} | {r['params']:,} | {bpc('bpc')} | {bpc('sliding_bpc')} | {bpc('memory_bpc')} "
              f"| {r['tok_s']:,.0f} |")


if __name__ == "__main__":
    main()
