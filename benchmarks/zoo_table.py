"""The zoo side by side: a markdown table from finished runs (the zoo table of docs/guide/zoo.md).

    python benchmarks/zoo_table.py RUNS_DIR [RUN_ID_PREFIX ...]

For every run (or those whose id starts with a prefix, in that order; the first is the
baseline): non-embedding parameters, median tokens/s, the final validation loss (the whole
split, at the same step for every run), and the validation loss at equal wall clock: the
training time of the fastest run, counted from the step intervals (evaluation excluded), the
running validation (``train_benchmarks/loss``) interpolated between evaluations.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runspec.run.events import EVAL, FINAL, START, STEP, read_events  # noqa: E402


def summarize(run: Path) -> dict:
    evs = read_events(run / "events.jsonl")
    start = next(e for e in evs if e.kind == START)
    train_s, last_step, clock = 0.0, 0, {0: 0.0}
    tok_s, evals, final = [], [], None
    for e in evs:
        if e.kind == STEP and "train/step_ms" in e.metrics:
            train_s += e.metrics["train/step_ms"] / 1000 * (e.step - last_step)
            last_step = e.step
            clock[e.step] = train_s
            tok_s.append(e.metrics["train/tokens_per_s"])
        elif e.kind == EVAL and "train_benchmarks/loss" in e.metrics:
            evals.append((e.step, e.metrics["train_benchmarks/loss"]))
        elif e.kind == FINAL:
            final = e.metrics.get("final_benchmarks/loss")
    # each evaluation at the training time of the nearest logged step at or before it
    timed = [(max(t for s, t in clock.items() if s <= step), loss) for step, loss in evals]
    return {"id": run.name, "label": start.get("label", ""), "params": start.get("params_non_embedding"),
            "tok_s": statistics.median(tok_s) if tok_s else float("nan"), "train_s": train_s,
            "step": evals[-1][0] if evals else 0, "val": evals[-1][1] if evals else float("nan"),
            "timed": timed, "final": final}


def at_time(timed: list[tuple[float, float]], t: float) -> float:
    for (t0, l0), (t1, l1) in zip(timed, timed[1:]):
        if t0 <= t <= t1:
            return l0 + (l1 - l0) * (t - t0) / (t1 - t0) if t1 > t0 else l1
    return timed[-1][1] if timed and t >= timed[-1][0] else float("nan")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    root = Path(argv[0])
    runs = sorted(p for p in root.iterdir() if (p / "events.jsonl").exists())
    if argv[1:]:
        runs = [next(p for p in runs if p.name.startswith(prefix)) for prefix in argv[1:]]
    rows = [summarize(p) for p in runs]
    base = rows[0]
    t_eq = min(r["train_s"] for r in rows)
    print(f"equal wall clock: {t_eq:.0f} s of training (the fastest run's whole training time)\n")
    print("| run | model | non-emb params | tokens/s | val loss at equal steps (final, whole split) | Δ | "
          f"val loss at equal wall clock ({t_eq:.0f} s) | Δ |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    base_eq = at_time(base["timed"], t_eq)
    for r in rows:
        if r["final"] is None:
            print(f"| {r['id']} | {r['label']} | unfinished | | | | | |")
            continue
        eq = at_time(r["timed"], t_eq)
        print(f"| {r['id'].rsplit('-', 2)[0]} | {r['label']} | {r['params'] / 1e6:.3f}M | {r['tok_s']:,.0f} "
              f"({r['tok_s'] / base['tok_s']:.2f}×) | {r['final']:.4f} | {r['final'] - base['final']:+.4f} "
              f"| {eq:.4f} | {eq - base_eq:+.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
