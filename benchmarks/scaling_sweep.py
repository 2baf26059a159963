"""The scaling fit end to end on this machine: the CPU size ladder (examples/sweeps/cpu/ladder.toml,
3 widths x 3 tokens-per-parameter ratios on the built-in stories) or the CPU IsoFLOP sweep
(--spec isoflop: 5 widths x 3 FLOP budgets) queued as a sweep, trained by a real worker, then
fitted with `cockpit analyze scaling`.

    python benchmarks/scaling_sweep.py [--spec ladder|isoflop] [--runs-dir DIR] [--budget 1e14] [--out DIR]

With --runs-dir pointing at a directory where the sweep already ran, only the fit is redone.
Prints the sweep's runs and the fit with its intervals (as reported in docs/guide/sweeps.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = {"ladder": ROOT / "examples/sweeps/cpu/ladder.toml", "isoflop": ROOT / "examples/sweeps/cpu/isoflop.toml"}


def cockpit(runs: Path, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "cockpit", "--runs-dir", str(runs), *args], capture_output=True,
                       text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"cockpit {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", choices=SPECS, default="ladder")
    ap.add_argument("--runs-dir", default=None)
    ap.add_argument("--budget", default="1e14", help="FLOPs for the compute-optimal split")
    ap.add_argument("--out", default=None, help="PNG plots here")
    args = ap.parse_args()
    runs = Path(args.runs_dir or tempfile.mkdtemp(prefix="scaling_sweep_"))
    have = cockpit(runs, "sweep", "ls") if runs.exists() else ""
    name = f"cpu_{args.spec}"
    if name not in have:
        out = cockpit(runs, "sweep", str(SPECS[args.spec]))
        print(out.strip().splitlines()[-1])
        t0 = time.time()
        subprocess.run([sys.executable, "-m", "cockpit", "--runs-dir", str(runs), "worker", "--once"], cwd=ROOT,
                       check=True, capture_output=True)
        print(f"trained in {time.time() - t0:.0f} s")
        have = cockpit(runs, "sweep", "ls")
    sweep_id = next(line.split()[0] for line in have.splitlines() if line.startswith(name))
    print(cockpit(runs, "sweep", "status", sweep_id).rstrip())
    extra = ["--out", args.out] if args.out else []
    print(cockpit(runs, "analyze", "scaling", "--sweep", sweep_id, "--budget", args.budget, *extra).rstrip())
    print(f"runs: {runs}")


if __name__ == "__main__":
    main()
