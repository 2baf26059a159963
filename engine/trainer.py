"""The training state and one optimizer step, shared by ``train`` and ``bench``.

Hot-loop rules: no host-device sync per step (losses and norms stay tensors until a log
step reads them), no Python work per token (a batch is B slices of a memory-mapped array).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from engine.config import RunConfig, resolved_dict
from engine.device import autocast_context, peak_flops, pick_device
from engine.generate import sample_tokens
from engine.model import build_model
from engine.optim import build_optimizers, lr_factor
from engine.shards import load_tokens
from engine.stats import auroc, spearman

# Conviction statistics keep per-token values on the host; this caps their memory.
MAX_STAT_TOKENS = 2_000_000


@dataclass
class EvalResult:
    loss: float
    bpb: float
    tokens: int
    conviction: dict[str, float] | None = None  # informativeness of the conviction head

    def metrics(self, namespace: str) -> dict[str, float]:
        out = {f"{namespace}/loss": self.loss, f"{namespace}/bpb": self.bpb}
        for key, value in (self.conviction or {}).items():
            out[f"{namespace}/conviction_{key}"] = value
        return out


def window_count(split_len: int, block_size: int) -> int:
    """How many training windows (block_size + 1 tokens each) start in a split: offsets
    0 .. split_len - block_size - 1, the last one included."""
    return split_len - block_size


def group_norm(params: list[torch.nn.Parameter]) -> torch.Tensor | None:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


class Trainer:
    def __init__(self, cfg: RunConfig, log: Callable[[str], None] = print):
        self.cfg = cfg
        t = cfg.train
        self.device = pick_device(t.device)
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 for fp32 matmuls
        torch.manual_seed(t.seed)
        self.data = load_tokens(cfg.data, cfg.model.block_size, log)
        self.tokenizer = self.data.tokenizer
        self.raw_model = build_model(cfg, self.data.vocab_size).to(self.device)
        self.model = torch.compile(self.raw_model) if t.compile else self.raw_model
        self.opt = build_optimizers(self.raw_model, cfg, self.device.type)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.precision == "fp16")
        self.autocast = lambda: autocast_context(self.device, t.precision)
        self.batch_gen = torch.Generator().manual_seed(t.seed)  # the data position, checkpointed
        self.step = 0
        self.tokens_seen = 0
        self.has_conviction = self.raw_model.conviction_head is not None
        self._interval = {k: torch.zeros((), device=self.device) for k in self.interval_keys()}
        self._interval_steps = 0
        self.groups = self.raw_model.module_groups()
        self.params = [p for p in self.raw_model.parameters() if p.requires_grad]
        lengths = np.zeros(self.raw_model.vocab_size, dtype=np.int64)
        lengths[: self.tokenizer.vocab_size] = self.tokenizer.byte_lengths()
        self.byte_lengths = torch.from_numpy(lengths).to(self.device)
        self.peak_flops, self.peak_source = peak_flops(self.device, t.precision, t.peak_tflops)
        self.flops_per_token = self.raw_model.flops_per_token()
        # running validation: the same windows every time, so the curve is comparable
        g = torch.Generator().manual_seed(t.seed + 1)
        n = cfg.eval.batches * t.batch_size
        self.eval_offsets = torch.randint(window_count(len(self.data.val), cfg.model.block_size), (n,), generator=g)
        # divergence is tracked on the device (no host sync per step) and read where the loop syncs
        self._bad_step = torch.full((), -1.0, device=self.device)  # first step whose loss was not finite
        self._bad_value = torch.zeros((), device=self.device)
        self._last_finite = torch.full((), float("nan"), device=self.device)
        self._step_t = torch.zeros((), device=self.device)

    # -- data -----------------------------------------------------------------------------
    def batch(self, split: np.ndarray, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = self.cfg.model.block_size
        rows = np.stack([split[i: i + T + 1] for i in offsets.tolist()]).astype(np.int64)
        xy = torch.from_numpy(rows)
        if self.device.type == "cuda":
            xy = xy.pin_memory().to(self.device, non_blocking=True)
        else:
            xy = xy.to(self.device)
        return xy[:, :-1], xy[:, 1:]

    def next_offsets(self) -> torch.Tensor:
        high = window_count(len(self.data.train), self.cfg.model.block_size)
        return torch.randint(high, (self.cfg.train.batch_size,), generator=self.batch_gen)

    # -- one optimizer step ---------------------------------------------------------------
    def train_step(self, want_metrics: bool = False, grad_norms: bool = True
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One optimizer step. ``want_metrics``: this is a log step (hidden-state norm, global
        grad norm); ``grad_norms``: also the per-module gradient norms."""
        t = self.cfg.train
        self.opt.set_lr(lr_factor(self.cfg, self.step))
        loss_sum = torch.zeros((), device=self.device)
        metrics: dict[str, torch.Tensor] = {}
        for micro in range(t.grad_accum):
            x, y = self.batch(self.data.train, self.next_offsets())
            with self.autocast():
                out = self.model(x, y)
            loss = out.loss / t.grad_accum
            self.scaler.scale(loss).backward()
            loss_sum += loss.detach()
            self._interval["debug/ce_loss"] += out.ce_loss.detach() / t.grad_accum
            if out.conviction_loss is not None:
                self._interval["debug/conviction_loss"] += out.conviction_loss.detach() / t.grad_accum
            if want_metrics and micro == t.grad_accum - 1:
                metrics["debug/hidden_norm"] = out.hidden.detach().float().norm(dim=-1).mean()
        if t.grad_clip > 0 or want_metrics:
            for opt in self.opt.optimizers:
                self.scaler.unscale_(opt)
        if t.grad_clip > 0:
            total = torch.nn.utils.clip_grad_norm_(self.params, t.grad_clip)
        elif want_metrics:
            total = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        if want_metrics:
            metrics["train/grad_norm"] = total
            for name, params in self.groups.items() if grad_norms else ():
                norm = group_norm(params)
                if norm is not None:
                    metrics[f"debug/grad_norm/{name}"] = norm
        for opt in self.opt.optimizers:
            self.scaler.step(opt)
        self.scaler.update()
        self.opt.zero_grad()
        self.step += 1
        self.tokens_seen += self.cfg.tokens_per_step
        self._interval["train/loss"] += loss_sum
        self._interval_steps += 1
        self._track_divergence(loss_sum)
        return loss_sum, metrics

    def _track_divergence(self, loss: torch.Tensor) -> None:
        self._step_t += 1
        finite = torch.isfinite(loss)
        clean = self._bad_step < 0
        first = ~finite & clean
        self._bad_step = torch.where(first, self._step_t, self._bad_step)
        self._bad_value = torch.where(first, loss.float(), self._bad_value)
        self._last_finite = torch.where(finite & clean, loss.float(), self._last_finite)

    def divergence(self) -> tuple[int, str, float] | None:
        """(step, 'nan' or 'inf', last finite loss) of the first non-finite loss, or None."""
        step = int(self._bad_step.item())
        if step < 0:
            return None
        value = float(self._bad_value.item())
        return step, "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"), float(self._last_finite.item())

    def lr_factor(self, step: int) -> float:
        return lr_factor(self.cfg, step)

    def interval_keys(self) -> list[str]:
        keys = ["train/loss", "debug/ce_loss"]
        return keys + ["debug/conviction_loss"] if self.has_conviction else keys

    def interval_means(self) -> dict[str, float]:
        """Mean losses since the last call (one host sync), then start a new interval."""
        n = max(1, self._interval_steps)
        out = {k: v.item() / n for k, v in self._interval.items()}
        for v in self._interval.values():
            v.zero_()
        self._interval_steps = 0
        return out

    @property
    def lr(self) -> float:
        return self.cfg.optim.lr * lr_factor(self.cfg, max(0, self.step - 1))

    # -- evaluation -----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, offsets: torch.Tensor, conviction_stats: bool = False) -> EvalResult:
        """Loss and bits per byte over the windows at ``offsets`` of the validation split; with
        ``conviction_stats``, also how informative the conviction head is there."""
        model = self.raw_model  # eager: eval batch shapes differ and must not trigger recompiles
        model.eval()
        nats = torch.zeros((), dtype=torch.float64, device=self.device)
        nbytes = torch.zeros((), dtype=torch.int64, device=self.device)
        count = 0
        collect = conviction_stats and self.has_conviction
        conv, correct, token_loss = [], [], []
        B = self.cfg.train.batch_size
        for i in range(0, len(offsets), B):
            x, y = self.batch(self.data.val, offsets[i: i + B])
            with self.autocast():
                out = model(x)
            logits = out.logits.float()
            per_token = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1),
                                                          reduction="none")
            nats += per_token.sum().double()
            nbytes += self.byte_lengths[y].sum()
            count += y.numel()
            if collect and count <= MAX_STAT_TOKENS:
                conv.append(out.conviction.reshape(-1).cpu())
                correct.append((logits.argmax(-1) == y).reshape(-1).cpu())
                token_loss.append(per_token.cpu())
        model.train()
        loss = nats.item() / max(1, count)
        bpb = nats.item() / math.log(2) / max(1, int(nbytes.item()))
        stats = None
        if collect and conv:
            c = torch.cat(conv).numpy()
            stats = {"auroc_top1": auroc(c, torch.cat(correct).numpy()),
                     "spearman_loss": spearman(c, torch.cat(token_loss).numpy()),
                     "mean": float(c.mean())}
        return EvalResult(loss, bpb, count, stats)

    def full_val_offsets(self) -> torch.Tensor:
        """Non-overlapping windows over the whole validation split (capped by final_max_batches)."""
        T = self.cfg.model.block_size
        offsets = torch.arange(0, len(self.data.val) - T - 1 + 1, T)
        cap = self.cfg.eval.final_max_batches * self.cfg.train.batch_size
        return offsets[:cap] if cap else offsets

    def sample(self, seed: int) -> str:
        e = self.cfg.eval
        prompt = self.tokenizer.encode(e.sample_prompt) if e.sample_prompt else [self.tokenizer.eot]
        g = torch.Generator(device=self.device).manual_seed(seed)  # never the training RNG
        self.raw_model.eval()
        ids = [s.id for s in sample_tokens(self.raw_model, prompt, e.sample_tokens, e.temperature, e.top_k,
                                           generator=g, vocab_limit=self.tokenizer.vocab_size)]
        self.raw_model.train()
        return e.sample_prompt + self.tokenizer.decode(ids)

    # -- checkpoint state -----------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "batch": self.batch_gen.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "model": self.raw_model.state_dict(),
            "optim": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "rng": rng,
            "config": resolved_dict(self.cfg),
            "tokenizer": self.tokenizer.name,
            "vocab_size": self.tokenizer.vocab_size,
        }

    def load_state(self, payload: dict[str, Any]) -> None:
        self.raw_model.load_state_dict(payload["model"])
        self.opt.load_state_dict(payload["optim"])
        if payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.step = int(payload["step"])
        self._step_t.fill_(self.step)
        self.tokens_seen = int(payload.get("tokens_seen", 0))
        rng = payload["rng"]
        torch.set_rng_state(rng["torch"])
        self.batch_gen.set_state(rng["batch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])

    def summary(self) -> dict[str, Any]:
        m = self.cfg.model
        return {
            "params": self.raw_model.num_params(),
            "params_non_embedding": self.raw_model.num_params(non_embedding=True),
            "device": str(self.device),
            "precision": self.cfg.train.precision,
            "compile": self.cfg.train.compile,
            "tokenizer": self.tokenizer.name,
            "vocab_size": self.tokenizer.vocab_size,
            "model": f"{m.n_layer}L d{m.d_model} {m.n_head}h x{self.cfg.head_dim} ff{self.cfg.d_ff} "
                     f"{m.activation}{' gated' if m.gated else ''} {m.norm} pos={m.pos} ctx={m.block_size}",
            "tokens_per_step": self.cfg.tokens_per_step,
            "train_tokens": len(self.data.train),
            "val_tokens": len(self.data.val),
            "flops_per_token": self.flops_per_token,
            "peak_flops": self.peak_flops,
            "peak_source": self.peak_source,
        }
