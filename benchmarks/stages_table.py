"""The stages table of docs/guide/stages.md: growth against training the large shape from scratch for the same
compute, and LoRA / repeated LoRA against full fine-tuning, CPU-sized, on real text.

    python benchmarks/stages_table.py [TEXT_FILE] [--runs-dir DIR]

TEXT_FILE: the corpus the growth runs train on and the fine-tunes move to (the docs' table used
tinyshakespeare's input.txt); the LoRA base run pre-trains on the embedded stories. Without it,
a corpus is generated (the story generator with another seed, each story's words in reverse
order: text the base has not seen), so the benchmark runs on a fresh clone, offline. Every run is a real
``cockpit --headless run`` of a config in examples/growth/cpu and examples/lora/cpu. Prints
one markdown table per comparison: final validation loss (the whole split), parameters
trained, training FLOPs, and wall-clock training time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runspec.run.events import FINAL, STAGE, START, STEP, read_events  # noqa: E402


def run(config: Path, runs: Path, name: str, *sets: str) -> Path:
    cmd = [sys.executable, "-m", "cockpit", "--headless", "--runs-dir", str(runs), "run", str(config),
           "--name", name, *[a for s in sets for a in ("--set", s)]]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"{config.name} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return max(runs.glob(f"{name}-*"))


def summary(rd: Path) -> dict:
    evs = read_events(rd / "events.jsonl")
    start = next(e for e in evs if e.kind == START)
    final = next(e for e in evs if e.kind == FINAL).metrics
    steps = [e for e in evs if e.kind == STEP]
    stages = [e for e in evs if e.kind == STAGE and not e.get("restart")]
    trainable = stages[-1].get("params_trainable") if stages else start.get("params_trainable", start.get("params"))
    # training FLOPs: each logged interval's tokens at the FLOPs per token of the shape it ran
    fpt = start.get("flops_per_token")
    grown_at = next((e.step for e in stages if "n_layer" in e.get("description", "") or "d_model" in e.get("description", "")), None)
    ratio = big_ratio(rd) if grown_at is not None else 1.0
    flops, last_step, last_tokens, seconds = 0.0, 0, 0, 0.0
    for e in steps:
        tokens = e.metrics["train/tokens"]
        flops += fpt * (ratio if grown_at is not None and e.step > grown_at else 1.0) * (tokens - last_tokens)
        seconds += e.metrics["train/step_ms"] / 1000 * (e.step - last_step)
        last_step, last_tokens = e.step, tokens
    return {"run": rd.name.rsplit("-", 2)[0], "val": final["final_benchmarks/loss"], "trainable": trainable,
            "params": stages[-1].get("params") if stages else start.get("params"), "flops": flops, "seconds": seconds}


def big_ratio(rd: Path) -> float:
    """FLOPs per token of the grown shape over the starting one (from the resolved config)."""
    from runspec.config.load import load_config
    from runspec.config.plan import stage_plan
    from runspec.config.shape import flops_per_token

    cfg = load_config(rd / "resolved.toml")
    plan = stage_plan(cfg)
    return flops_per_token(plan.configs[-1].model, 256) / flops_per_token(plan.configs[0].model, 256)


def table(rows: list[dict]) -> str:
    out = ["| run | final val loss | params (trained) | training TFLOP | train time |", "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['run']} | {r['val']:.4f} | {r['params']:,} ({r['trainable']:,}) | "
                   f"{r['flops'] / 1e12:.1f} | {r['seconds']:.0f} s |")
    return "\n".join(out)


def generated_corpus(where: Path) -> str:
    """A second corpus without downloading one: generated stories, each with its words reversed."""
    from runspec.data.stories import generate_stories

    path = where / "generated_finetune.txt"
    where.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(" ".join(reversed(s.split())) for s in generate_stories(4000, seed=99)), encoding="utf-8")
    print(f"corpus: {path} (generated; pass TEXT_FILE for real text)", file=sys.stderr)
    return str(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("text", nargs="?", help="a .txt corpus (default: one generated here)")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--only", choices=("growth", "lora"), default=None, help="one of the two comparisons")
    args = p.parse_args()
    runs = Path(args.runs_dir or tempfile.mkdtemp(prefix="stages-"))
    text = str(Path(args.text).resolve()) if args.text else generated_corpus(runs)
    corpus = "tinyshakespeare" if args.text and "shakespeare" in args.text else Path(text).name
    growth = ROOT / "examples/growth/cpu"
    rows = []
    for name in ("grow_wide", "scratch_wide", "grow_deep", "scratch_deep") if args.only != "lora" else ():
        rows.append(summary(run(growth / f"{name}.toml", runs, name, f"data.path={text}")))
        print(f"  {name}: {rows[-1]['val']:.4f}", file=sys.stderr)
    if rows:
        print(f"Growth ({corpus}, bytes; 4x64 for 300 steps then grown, against the grown shape from scratch "
              "for the same FLOPs)\n")
        print(table(rows) + "\n")
    if args.only == "growth":
        return 0
    lora = ROOT / "examples/lora/cpu"
    base = run(lora / "base.toml", runs, "base")
    rows = []
    for name in ("full_ft", "lora", "relora"):
        rows.append(summary(run(lora / f"{name}.toml", runs, name, f"data.path={text}", f"init.from={base}")))
        print(f"  {name}: {rows[-1]['val']:.4f}", file=sys.stderr)
    print(f"Fine-tuning {base.name} (embedded stories, 600 steps) on {corpus} for 300 steps\n")
    print(table(rows))
    print(f"\nruns: {runs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
