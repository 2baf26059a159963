"""Model-based search against the full grid, through the product: the same space (learning rate,
warmup, weight decay) at one small shape on tinyshakespeare, as a grid sweep (every point trained
to the end) and as TPE + ASHA searches with several seeds (``examples/sweeps/cpu/search.toml``'s
settings, with the first rung after the longest warmup: a run still warming up looks worse than
one that is not, and ASHA would stop the best configurations there), each given a third of the
grid's tokens as its ``budget_tokens`` (and up to ``--trials`` trials), each drained by
``cockpit worker --once``. Counts the tokens each one trained (a pruned
run counts the steps it made) and compares the best final validation loss.

    python benchmarks/search_vs_grid.py PATH/TO/tinyshakespeare/input.txt [--seeds 3] [--first-seed 0]
        [--trials 40] [--budget 0.3333] [--steps 900] [--runs-dir DIR [--reuse-grid]]

Prints the grid's best, each search's best and tokens, and the two targets: within 1% of the
grid's best, with at most a third of the grid's tokens.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import tomli_w

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from product import cockpit  # noqa: E402
LRS = [3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
WARMUPS = [0, 100, 200]
DECAYS = [0.0, 0.1, 0.3]


def fixed(text: str, steps: int) -> dict:
    return {"model.n_layer": 2, "model.d_model": 64, "model.block_size": 64, "data.path": str(Path(text).resolve()),
            "train.max_steps": steps, "log.wandb": False, "eval.sample_tokens": 0, "eval.batches": 16}


def results(runs: Path, prefix: str) -> tuple[float, int, int]:
    """(best final validation loss, tokens trained, runs) over the runs whose names start with prefix."""
    best, tokens, n = float("inf"), 0, 0
    for d in runs.glob(f"{prefix}*"):
        state = json.loads((d / "state.json").read_text())
        start = final = None
        for line in (d / "events.jsonl").read_text().splitlines():
            ev = json.loads(line)
            start = ev if ev.get("kind") == "start" and start is None else start
            final = ev if ev.get("kind") == "final" else final
        tokens += state.get("step", 0) * (start or {}).get("tokens_per_step", 0)
        n += 1
        if final and state["status"] == "completed":
            best = min(best, final["metrics"]["final_benchmarks/loss"])
    return best, tokens, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("text")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="more seeds in the same runs directory")
    ap.add_argument("--trials", type=int, default=40, help="at most; the token budget ends a search sooner")
    ap.add_argument("--budget", type=float, default=1 / 3, help="each search's budget_tokens, a share of the grid's")
    ap.add_argument("--min-steps", type=int, default=300, help="ASHA's first rung (after the longest warmup)")
    ap.add_argument("--reuse-grid", action="store_true", help="the grid's runs in --runs-dir are read, not trained")
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--runs-dir", default=None)
    args = ap.parse_args()
    runs = Path(args.runs_dir or tempfile.mkdtemp(prefix="search-vs-grid-"))
    specs = runs / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    base = str(ROOT / "examples" / "quickstart.toml")
    grid = {"sweep": {"name": "grid", "base": base, "mode": "grid", "set": fixed(args.text, args.steps),
                      "axes": {"optim.lr": LRS, "optim.warmup_steps": WARMUPS, "optim.weight_decay": DECAYS}}}
    (specs / "grid.toml").write_text(tomli_w.dumps(grid))
    if not (args.reuse_grid and any(runs.glob("grid-*"))):
        print(f"grid: {len(list(itertools.product(LRS, WARMUPS, DECAYS)))} runs of {args.steps} steps ...", flush=True)
        cockpit(runs, "sweep", str(specs / "grid.toml"))
        cockpit(runs, "worker", "--once")
    g_best, g_tokens, g_n = results(runs, "grid-")
    print(f"grid: best final val loss {g_best:.4f} over {g_n} runs, {g_tokens:,} tokens", flush=True)
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        name = f"tpe{seed}"
        spec = {"sweep": {"name": name, "base": base, "method": "tpe", "trials": args.trials, "parallel": 2,
                          "seed": seed, "objective": "final_val_loss", "set": fixed(args.text, args.steps),
                          "budget_tokens": int(g_tokens * args.budget),
                          "space": {"optim.lr": {"log_uniform": [LRS[0], LRS[-1]]},
                                    "optim.warmup_steps": {"int": [WARMUPS[0], WARMUPS[-1]]},
                                    "optim.weight_decay": {"uniform": [DECAYS[0], DECAYS[-1]]}},
                          "prune": {"method": "asha", "min_steps": args.min_steps, "reduction": 4}}}
        (specs / f"{name}.toml").write_text(tomli_w.dumps(spec))
        cockpit(runs, "sweep", str(specs / f"{name}.toml"))
        cockpit(runs, "worker", "--once")
        best, tokens, n = results(runs, f"{name}-t")
        rows.append((seed, best, tokens, n))
        print(f"search seed {seed}: best {best:.4f} over {n} trials, {tokens:,} tokens "
              f"({tokens / g_tokens:.2f} of the grid's)", flush=True)
    print(f"\n| | best final val loss | vs grid best | tokens trained | / grid's |")
    print("|---|---|---|---|---|")
    print(f"| full grid ({g_n} runs) | {g_best:.4f} | | {g_tokens:,} | 1.00 |")
    for seed, best, tokens, n in rows:
        print(f"| TPE + ASHA, seed {seed} ({n} trials) | {best:.4f} | {100 * (best - g_best) / g_best:+.2f}% | "
              f"{tokens:,} | {tokens / g_tokens:.2f} |")
    ok = all((b - g_best) / g_best <= 0.01 and t <= g_tokens / 3 for _, b, t, _ in rows)
    print(f"\ntargets (within 1% of the grid's best, at most 1/3 of its tokens, every seed): {'met' if ok else 'NOT met'}"
          f"\nruns in {runs}")


if __name__ == "__main__":
    main()
