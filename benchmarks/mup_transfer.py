"""Does a learning rate found at a small width transfer? ``examples/mup/ladder.toml`` (widths 64,
128, 256: 4x; the same learning-rate grid in the standard parametrization and in μP) through the
product: ``cockpit sweep``, ``cockpit worker --once``, then ``cockpit analyze lr`` (SP and μP side
by side) and ``cockpit bench coordcheck`` on the ladder's base config.

    python benchmarks/mup_transfer.py [--text PATH/TO/input.txt] [--steps 300] [--runs-dir DIR]
        [--widths 64,128,256,512]

Prints the best learning rate per width in each parametrization and how many grid steps it
moved, then the coordinate check's table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from product import cockpit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--text", default=None, help="a corpus for the ladder (default: the built-in stories)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--runs-dir", default=None)
    ap.add_argument("--widths", default="64,128,256,512", help="the coordinate check's widths")
    args = ap.parse_args()
    runs = Path(args.runs_dir or tempfile.mkdtemp(prefix="mup-transfer-"))
    spec = ROOT / "examples" / "mup" / "ladder.toml"
    # the ladder as shipped, with the overrides in its [sweep.set] and its base by absolute path
    ladder = tomllib.loads(spec.read_text())
    ladder["sweep"]["base"] = str(spec.parent / ladder["sweep"]["base"])
    ladder["sweep"]["set"] = {"train.max_steps": args.steps, **({"data.path": str(Path(args.text).resolve())}
                                                                 if args.text else {})}
    work = runs / "spec"
    work.mkdir(parents=True, exist_ok=True)
    (work / "ladder.toml").write_text(tomli_w.dumps(ladder))
    print(f"the ladder: {spec.name} ({args.steps} steps a run) in {runs} ...", flush=True)
    cockpit(runs, "sweep", str(work / "ladder.toml"))
    cockpit(runs, "worker", "--once")
    print(cockpit(runs, "analyze", "lr", "--sweep", "mup_ladder", "--no-chart"))
    print(cockpit(runs, "bench", "coordcheck", ladder["sweep"]["base"], "--widths", args.widths, "--steps", "10",
                  "--out", str(runs / "coordcheck")))


if __name__ == "__main__":
    main()
