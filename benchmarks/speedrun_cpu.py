"""A CPU speedrun on tinyshakespeare: how long the engine takes to reach nanoGPT's validation
loss, against a plain reference loop with nanoGPT's own CPU recipe, in one invocation.

    python benchmarks/speedrun_cpu.py PATH/TO/tinyshakespeare/input.txt
        [--config examples/speedrun/speedrun.toml] [--rounds 2] [--target 1.886] [--set K=V ...]
        [--only speedrun|reference] [--ablate]

The reference is this file's own code: nanoGPT's model (GPT-2 blocks without biases, tied
embeddings, GELU, learned positions, init 0.02 with the scaled output projections) and its
README's CPU recipe (4 layers, 4 heads, d 128, context 64, batch 12, AdamW 1e-3 with weight decay
0.1 and beta2 0.99, 100 warm-up steps, cosine to 1e-4 at 2,000 iterations, gradient clipping
1.0, no dropout), on the characters of the file, the last 10% held out.

Both are scored the same way, on the whole validation split: the mean cross-entropy (nats per
character) over non-overlapping windows of the model's context, the first token of each
window predicted from the start of its window. Every ``--eval-every`` steps the clock stops
and the split is scored; the time to target is the training wall clock (evaluations excluded)
at the first score at or under ``--target``. Rounds interleave reference and speedrun, so a
machine getting busier hits both. Prints each round and the medians' ratio.

``--ablate`` then runs the speedrun once more per technique with that technique put back to
nanoGPT's choice (ABLATIONS), same rounds, and prints the table of what each one bought.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.trainer import Trainer  # noqa: E402
from runspec.config.load import load_config  # noqa: E402

NANOGPT_VAL_LOSS = 1.886  # nanoGPT README's CPU shakespeare_char result (its 2,000 iterations)


# -- the reference: nanoGPT's model and CPU recipe, written out plainly -----------------------
@dataclass
class Recipe:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    batch_size: int = 12
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0


class Block(nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.h = h
        self.ln_1, self.ln_2 = nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class NanoGPT(nn.Module):
    def __init__(self, vocab: int, r: Recipe):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, r.n_embd), nn.Embedding(r.block_size, r.n_embd)
        self.blocks = nn.ModuleList(Block(r.n_embd, r.n_head) for _ in range(r.n_layer))
        self.ln_f = nn.LayerNorm(r.n_embd, bias=False)
        self.head = nn.Linear(r.n_embd, vocab, bias=False)
        self.head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * r.n_layer) if name.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))


def char_splits(text: str) -> tuple[np.ndarray, np.ndarray, int]:
    """nanoGPT's prepare.py: the file's characters as ids, the first 90% to train on."""
    lookup = {c: i for i, c in enumerate(sorted(set(text)))}
    ids = np.fromiter((lookup[c] for c in text), dtype=np.int64, count=len(text))
    n = int(0.9 * len(ids))
    return ids[:n], ids[n:], len(lookup)


@torch.no_grad()
def score(logits_of, val: np.ndarray, T: int, batch: int = 64) -> float:
    """Mean cross-entropy over non-overlapping windows of T + 1 tokens covering the split."""
    starts = np.arange(0, len(val) - T - 1 + 1, T)
    nats, count = 0.0, 0
    for i in range(0, len(starts), batch):
        rows = torch.from_numpy(np.stack([val[s: s + T + 1] for s in starts[i: i + batch]]))
        logits = logits_of(rows[:, :-1]).float()
        nats += F.cross_entropy(logits.reshape(-1, logits.size(-1)), rows[:, 1:].reshape(-1), reduction="sum").item()
        count += rows[:, 1:].numel()
    return nats / count


@dataclass
class Result:
    seconds: float | None  # training wall clock at the first score <= target (None: never)
    step: int | None
    final: float  # the last score
    steps: int
    history: list[tuple[int, float, float]]  # (step, training seconds so far, score)


def reference(text: str, target: float, eval_every: int, seed: int) -> Result:
    r = Recipe()
    train, val, vocab = char_splits(text)
    torch.manual_seed(seed)
    model = NanoGPT(vocab, r)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": r.weight_decay}, {"params": other, "weight_decay": 0.0}],
                            lr=r.lr, betas=r.betas)
    data = torch.from_numpy(train)
    g = torch.Generator().manual_seed(seed)

    def lr_at(it: int) -> float:  # nanoGPT's get_lr
        if it < r.warmup:
            return r.lr * (it + 1) / (r.warmup + 1)
        ratio = (it - r.warmup) / (r.max_iters - r.warmup)
        return r.min_lr + 0.5 * (1.0 + math.cos(math.pi * min(1.0, ratio))) * (r.lr - r.min_lr)

    def evaluate() -> float:
        model.eval()
        s = score(model, val, r.block_size)
        model.train()
        return s

    return _race(r.max_iters, lambda it: _nano_step(model, opt, data, r, g, lr_at(it)), evaluate, target, eval_every)


def _nano_step(model, opt, data, r: Recipe, g, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
    ix = torch.randint(len(data) - r.block_size - 1, (r.batch_size,), generator=g)
    x = torch.stack([data[i: i + r.block_size] for i in ix])
    y = torch.stack([data[i + 1: i + 1 + r.block_size] for i in ix])
    logits = model(x)
    loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
    opt.step()


def speedrun(config: str, text_path: str, sets: list[str], target: float, eval_every: int) -> Result:
    cfg = load_config(config, [f"data.path={text_path}", "log.wandb=false", *sets])
    trainer = Trainer(cfg, log=lambda m: None)
    offsets = trainer.full_val_offsets()

    def evaluate() -> float:
        return trainer.evaluate(offsets).loss  # the engine's own full pass (non-overlapping windows)

    return _race(cfg.train.max_steps, lambda it: trainer.train_step(), evaluate, target, eval_every)


def _race(steps: int, step, evaluate, target: float, eval_every: int) -> Result:
    trained, history = 0.0, []
    hit: tuple[float, int] | None = None
    for it in range(steps):
        t0 = time.perf_counter()
        step(it)
        trained += time.perf_counter() - t0
        if (it + 1) % eval_every == 0 or it + 1 == steps:
            s = evaluate()
            history.append((it + 1, trained, s))
            if s <= target and hit is None:
                hit = (trained, it + 1)
                break
    return Result(hit[0] if hit else None, hit[1] if hit else None, history[-1][2], history[-1][0], history)


# each technique of the recipe, and the overrides that put nanoGPT's choice back in its place
ABLATIONS: dict[str, list[str]] = {
    "Muon -> AdamW (lr 1e-3, weight decay 0.1)": ["optim.name=adamw", "optim.lr=1e-3", "optim.weight_decay=0.1"],
    "bf16 autocast -> fp32": ["train.precision=fp32"],
    "RoPE -> learned positions": ["model.pos=learned"],
    "QK-norm -> none": ["model.qk_norm=false"],
    "zero-init blocks -> scaled init": ["model.init=scaled"],
    "linear decay to 0 -> cosine to lr/10": ["optim.schedule=cosine", "optim.min_lr=6e-4"],
}


def _median(values: list[float | None]) -> float | None:
    return statistics.median(values) if values and all(v is not None for v in values) else None


def ablate(args, base: float | None) -> None:
    print("\n| removed (nanoGPT's choice back) | time to target | vs the full recipe | score at the end |")
    print("|---|---|---|---|")
    print(f"| nothing (the recipe) | {base:.1f} s | 1.00 | |" if base else "| nothing | not reached | | |")
    for name, sets in ABLATIONS.items():
        runs = [speedrun(args.config, args.text, args.set + sets + [f"train.seed={1337 + r}"], args.target,
                         args.eval_every) for r in range(args.rounds)]
        t = _median([r.seconds for r in runs])
        last = statistics.median(r.final for r in runs)
        steps = max(r.steps for r in runs)
        took = f"{t:.1f} s" if t is not None else f"not reached by step {steps}"
        ratio = f"{t / base:.2f}" if t is not None and base else "-"
        print(f"| {name} | {took} | {ratio} | {last:.4f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("text", help="tinyshakespeare's input.txt")
    ap.add_argument("--config", default=str(ROOT / "examples/speedrun/speedrun.toml"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--target", type=float, default=NANOGPT_VAL_LOSS)
    ap.add_argument("--eval-every", type=int, default=50, help="steps between two scores of the validation split")
    ap.add_argument("--ref-eval-every", type=int, default=100, help="the same for the reference")
    ap.add_argument("--set", action="append", default=[], help="override a key of the speedrun config")
    ap.add_argument("--only", choices=("speedrun", "reference"), default=None)
    ap.add_argument("--ablate", action="store_true", help="then the table of what each technique bought")
    args = ap.parse_args()
    text = Path(args.text).read_text(encoding="utf-8")
    times: dict[str, list[float | None]] = {"reference": [], "speedrun": []}
    reference_ends: list[float] = []  # its time to target, or to the end of its recipe
    print(f"target val loss {args.target} on the whole validation split; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)
    for r in range(args.rounds):
        for name in ("reference", "speedrun"):
            if args.only and name != args.only:
                continue
            res = reference(text, args.target, args.ref_eval_every, seed=1337 + r) if name == "reference" else \
                speedrun(args.config, args.text, args.set + [f"train.seed={1337 + r}"], args.target, args.eval_every)
            times[name].append(res.seconds)
            if name == "reference":
                reference_ends.append(res.seconds if res.seconds is not None else res.history[-1][1])
            curve = " ".join(f"{s}:{v:.3f}@{t:.0f}s" for s, t, v in res.history)
            got = f"{res.seconds:.1f} s (step {res.step})" if res.seconds is not None else "not reached"
            print(f"round {r + 1} {name:9}: {got}; last score {res.final:.4f} at step {res.steps}  [{curve}]",
                  flush=True)
    med = {k: _median(v) for k, v in times.items() if v}
    for k, m in med.items():
        print(f"{k:9}: " + (f"median {m:.1f} s to val <= {args.target}" if m is not None
                            else f"did not reach {args.target} in every round"))
    if med.get("reference") is None and "reference" in med:
        print(f"(the reference's time is taken as its whole {Recipe.max_iters}-iteration run where it does not "
              f"reach the target: the recipe nanoGPT reports {NANOGPT_VAL_LOSS} for)")
        med["reference"] = statistics.median(reference_ends)
    if med.get("reference") and med.get("speedrun"):
        print(f"speedrun / reference: {med['speedrun'] / med['reference']:.3f} (target <= 0.333)")
    if args.ablate:
        ablate(args, med.get("speedrun"))


if __name__ == "__main__":
    main()
