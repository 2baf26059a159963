"""Training throughput at the nanogpt_cpu shape: cockpit's engine against a plain eager
PyTorch GPT loop (SDPA attention, fused QKV, AdamW) of the same shape, timed in the same
process on the same machine. Rounds alternate between the two so drift hits both equally.

    python benchmarks/train_throughput.py [--config examples/bench/nanogpt_cpu.toml]
        [--rounds 5] [--steps 30] [--set train.compile=true]

Prints tokens/s and median step ms of each and the ratio engine / plain.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.trainer import Trainer  # noqa: E402
from runspec.config.load import load_config  # noqa: E402


class PlainBlock(nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class PlainGPT(nn.Module):
    """The reference: what a researcher writes in an afternoon (nanoGPT without the knobs)."""

    def __init__(self, vocab: int, d: int, h: int, L: int, T: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(T, d)
        self.blocks = nn.ModuleList(PlainBlock(d, h) for _ in range(L))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0, 0.02)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def plain_stepper(cfg, train_tokens):
    m = cfg.model
    model = PlainGPT(256, m.d_model, m.n_head, m.n_layer, m.block_size)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=cfg.optim.lr, betas=tuple(cfg.optim.betas))
    data = torch.from_numpy(train_tokens[:2_000_000].astype("int64"))
    B, T = cfg.train.batch_size, m.block_size

    def step():
        ix = torch.randint(len(data) - T - 1, (B,))
        x = torch.stack([data[i:i + T] for i in ix])
        y = torch.stack([data[i + 1:i + T + 1] for i in ix])
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    return step


def time_steps(step, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="examples/bench/nanogpt_cpu.toml")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg = load_config(args.config, args.set)
    torch.manual_seed(0)
    trainer = Trainer(cfg, log=lambda m: None)
    engine_step = trainer.train_step
    plain_step = plain_stepper(cfg, trainer.data.train)
    for step in (engine_step, plain_step):  # warm-up (and compilation, when asked)
        time_steps(step, 10)
    engine_t, plain_t = [], []
    for _ in range(args.rounds):
        engine_t += time_steps(engine_step, args.steps)
        plain_t += time_steps(plain_step, args.steps)
    tps = cfg.tokens_per_step
    e_med, p_med = statistics.median(engine_t), statistics.median(plain_t)
    print(f"shape: {args.config} {' '.join(args.set)}  tokens/step {tps}  torch threads {torch.get_num_threads()}")
    print(f"engine  {tps / e_med:10,.0f} tokens/s   median step {1000 * e_med:7.2f} ms")
    print(f"plain   {tps / p_med:10,.0f} tokens/s   median step {1000 * p_med:7.2f} ms")
    print(f"ratio engine/plain: {p_med / e_med:.3f}x   ({args.rounds} rounds x {args.steps} steps each, interleaved)")
    assert math.isfinite(e_med)


if __name__ == "__main__":
    main()
