"""The training state and one optimizer step, shared by ``train`` and ``bench``.

Hot-loop rules: no host-device sync per step (losses and norms stay tensors until a log
step reads them), no Python work per token (a batch is B slices of a memory-mapped array).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from engine import stages
from engine.batches import BatchPipeline
from engine.device import autocast_context, peak_flops, pick_device
from engine.distributed import Dist
from engine.generate import sample_tokens
from engine.model import padded_vocab
from engine.model.heads import Features
from engine.optim import build_optimizers, lr_factor, orthogonalize_grads
from engine.sampling import Sampling
from runspec.config.plan import StagePlan, stage_plan
from runspec.config.schema import RunConfig, resolved_dict
from runspec.config.shape import cache_per_token, count_params, model_label
from runspec.data.shards import load_tokens
from runspec.run.metrics import (
    CLIP_FACTOR,
    CLIPPED,
    GRAD_NORM,
    HIDDEN_NORM,
    HIDDEN_NORM_NORMED,
    LOGIT_MAX,
    LOGIT_NORM,
    OBJECTIVE,
    TRAIN,
    TRAIN_LOSS,
    debug,
    debug_loss,
    grad_norm,
    named,
    update_ratio,
    weight_norm,
)

# Conviction statistics keep per-token values on the host; this caps their memory.
MAX_STAT_TOKENS = 2_000_000
DIVERGENCE_WINDOW = 256  # steps of losses kept on the device between two reads


@dataclass
class EvalResult:
    loss: float
    bpb: float
    tokens: int
    heads: dict[str, dict[str, float]] | None = None  # each named head's statistics (conviction: AUROC...)
    extra: dict[str, float] | None = None  # e.g. IVON's posterior-predictive loss
    bpc: float | None = None  # a byte-level model: bits per character (= per byte, the enwik8 way)

    def metrics(self, namespace: str, prefix: str = "") -> dict[str, float]:
        """namespace/<prefix>loss, .../<prefix>bpb (and bpc): prefix 'test_', 'full_', 'sliding_'."""
        out = {named(namespace, f"{prefix}loss"): self.loss, named(namespace, f"{prefix}bpb"): self.bpb}
        if self.bpc is not None:
            out[named(namespace, f"{prefix}bpc")] = self.bpc
        for head, stats in (self.heads or {}).items():
            for key, value in stats.items():
                out[named(namespace, f"{head}_{key}")] = value
        for key, value in (self.extra or {}).items():
            out[named(namespace, key)] = value
        return out


def window_count(split_len: int, block_size: int) -> int:
    """How many training windows (block_size + 1 tokens each) start in a split: offsets
    0 .. split_len - block_size - 1, the last one included."""
    return split_len - block_size


def group_norm(params: list[torch.nn.Parameter]) -> torch.Tensor | None:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    return _norm_of(grads)


def _norm_of(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of several tensors taken as one vector."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x.detach().float()) for x in tensors]))


def _full(value: torch.Tensor) -> torch.Tensor:
    """A sharded (FSDP) tensor's value over every rank; a plain tensor as it is."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value


class StepHook:
    """Something that happens around every optimizer step, whatever the model: before the step
    (gradients final: clipped, unscaled) and after it (weights updated). Stages, auxiliary-loss
    schedules and adapters add their own."""

    def before_step(self, trainer: "Trainer") -> None:
        pass

    def after_step(self, trainer: "Trainer") -> None:
        pass


class OrthoGradHook(StepHook):
    def before_step(self, trainer):
        orthogonalize_grads(trainer.params)


class ModelAfterStep(StepHook):
    """The model's own after-step work (nGPT: back onto the sphere)."""

    def after_step(self, trainer):
        trainer.raw_model.after_step()


def step_hooks(cfg: RunConfig, model) -> list[StepHook]:
    hooks: list[StepHook] = []
    if cfg.optim.orthograd:
        hooks.append(OrthoGradHook())
    if getattr(model, "ngpt", False):
        hooks.append(ModelAfterStep())
    return hooks


def may_leave_params_unused(cfg: RunConfig) -> bool:
    """Whether a step can leave trainable parameters without a gradient: an auxiliary loss
    dropped on its schedule, an expert no token was routed to. DDP must then look for them
    (a walk over the graph each step), else it waits for their gradients for ever."""
    return cfg.aux.enabled(cfg.model.n_layer) or cfg.model.ffn.kind == "moe"


# torch.compile = "auto": what compiling costs (seconds, once per stage) and saves (share of each
# step) as measured here: CPU, the nanogpt_cpu shape, 20-30 s to compile for 1.04-1.11x a step;
# an H200, 100M, 40-60 s for 1.45x (docs/benchmarks.md). A run compiles when its estimated
# training time times the saving beats the cost.
COMPILE_COST_S = {"cpu": 30.0, "cuda": 60.0}
COMPILE_GAIN = {"cpu": 0.05, "cuda": 0.30}
ASSUMED_UTILIZATION = {"cpu": 0.5, "cuda": 0.3}  # of the peak, for the estimate of a step's time


def compile_choice(cfg: RunConfig, device: torch.device, flops_per_token: float, peak: float) -> tuple[bool, str]:
    """(compile?, why) for ``[train] compile``: true and false as they say; auto compiles on CUDA
    and CPU where the run's estimated training time x the saving > the cost, and only where
    torch can compile (a C++ compiler on the CPU)."""
    setting = cfg.train.compile
    if setting != "auto":
        return setting == "true", f"compile = {setting}"
    kind = device.type
    if kind not in COMPILE_COST_S:
        return False, f"auto: eager on {kind}"
    if kind == "cpu" and not any(shutil.which(c) for c in ("c++", "g++", "clang++", "cl")):
        return False, "auto: eager (no C++ compiler for torch.compile's CPU kernels)"
    if kind == "cpu" and not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        return False, "auto: eager (no Python headers for torch.compile's CPU kernels)"
    run_s = cfg.train.max_steps * cfg.tokens_per_rank * flops_per_token / (peak * ASSUMED_UTILIZATION[kind])
    saves, costs = run_s * COMPILE_GAIN[kind], COMPILE_COST_S[kind]
    on = saves > costs
    return on, (f"auto: {'compiled' if on else 'eager'} (~{run_s / 60:.0f} min of steps would save ~{saves:.0f} s "
                f"for ~{costs:.0f} s of compiling)")


class Trainer:
    def __init__(self, cfg: RunConfig, log: Callable[[str], None] = print, dist: Dist | None = None,
                 device: str | None = None):
        self.cfg = self.base_cfg = cfg  # cfg: the current stage's config; base_cfg: the run's, stages and all
        t = cfg.train
        self.log = log
        # several ranks: each draws its share of one global batch; the same seed everywhere, so
        # every rank builds the same model (and a stage's new weights are the same on each)
        self.dist = dist or Dist()
        self.sharded = self.dist.enabled and t.fsdp  # FSDP2: parameters, gradients, optimizer state sharded
        self.device = pick_device(device or t.device)
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 for fp32 matmuls
        torch.manual_seed(t.seed)
        self.data = load_tokens(cfg.data, cfg.model.block_size, log)
        self.tokenizer = self.data.tokenizer
        self.plan: StagePlan = stage_plan(cfg)
        self.vocab = padded_vocab(self.data.vocab_size)
        self.stage, self.merged = 0, False
        stages.check_all(self.plan, self.vocab)
        self.batch_gen = torch.Generator().manual_seed(t.seed)  # the data position, checkpointed
        # a memory kind reads each batch row as a contiguous stream: the position is the step itself
        self.streams = cfg.model.memory.active
        self._draw_step = 0  # the step the next drawn batch is for (streams)
        self._memory: dict[int, list] = {}  # micro-batch -> each layer's memory of its streams
        self.step = 0
        self.batches = BatchPipeline(self.batch_gen, self.step_offsets, lambda o: self.batch(self.data.train, o),
                                     t.prefetch)
        self.peak_flops, self.peak_source = peak_flops(self.device, t.precision, t.peak_tflops)
        self._install(stages.build(self.plan, 0, self.vocab, self.device))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.precision == "fp16")
        self.autocast = lambda: autocast_context(self.device, t.precision)
        self.step = 0
        self.tokens_seen = 0
        self.has_conviction = self.raw_model.head("conviction") is not None
        self._interval: dict[str, torch.Tensor] = {TRAIN_LOSS: torch.zeros((), device=self.device)}
        self._interval_counts: dict[str, int] = {}  # steps each named loss was part of, this interval
        self._interval_steps = 0
        lengths = np.zeros(self.raw_model.vocab_size, dtype=np.int64)
        lengths[: self.tokenizer.vocab_size] = self.tokenizer.byte_lengths()
        if cfg.data.raw_bytes:  # every token is a byte of the file, byte 0 included (no separators)
            lengths[: self.tokenizer.vocab_size] = 1
        self.byte_lengths = torch.from_numpy(lengths).to(self.device)
        # running validation: the same windows every time, so the curve is comparable
        g = torch.Generator().manual_seed(t.seed + 1)
        n = cfg.eval.batches * t.batch_size
        self.eval_offsets = torch.randint(window_count(len(self.data.val), cfg.model.block_size), (n,), generator=g)
        # divergence: each step's loss is copied into a window on the device (one op, no host sync)
        # that ``divergence`` reads where the loop syncs anyway (log, eval and checkpoint steps)
        self._window = torch.zeros(DIVERGENCE_WINDOW, device=self.device)
        self._window_n = 0  # losses in the window
        self._window_start = 0  # steps done before the window's first loss
        self._last_finite: float = float("nan")
        self._bad: tuple[int, str, float] | None = None

    # -- stages ---------------------------------------------------------------------------
    def _install(self, model, opt=None) -> None:
        """Make ``model`` (stage ``self.stage``) the one trained: optimizer, hooks, groups."""
        self.cfg = self.plan.configs[self.stage]
        self.raw_model = model
        self._rewind()  # a stage may change the batch: what was built ahead is redrawn
        for states in self._memory.values():  # the memories go on with the new stage's modules
            for state, module in zip(states, model.memory or []):
                state.module = module
        self.ddp = None
        wrapped = model
        if self.sharded:  # FSDP2: each block is a unit gathered for its forward/backward, the rest the root's
            import warnings

            from torch.distributed.fsdp import fully_shard

            # the model's output holds views (logits, hidden state); nothing here changes them in place
            warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")

            for block in model.blocks:
                fully_shard(block)
            fully_shard(model)
        elif self.dist.enabled:  # rebuilt with each stage's model: DDP holds its parameters
            from torch.nn.parallel import DistributedDataParallel

            wrapped = self.ddp = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                # a loss can drop out on a schedule (T12), leaving its classifier without a gradient
                find_unused_parameters=may_leave_params_unused(self.cfg))
        self.compiled, self.compile_reason = compile_choice(self.cfg, self.device, model.flops_per_token(),
                                                            self.peak_flops)
        self.model = torch.compile(wrapped) if self.compiled else wrapped
        self.opt = opt or build_optimizers(model, self.cfg, self.device.type, train_tokens=len(self.data.train))
        self.hooks = step_hooks(self.cfg, model)
        self.groups = model.module_groups()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.flops_per_token = model.flops_per_token()
        self._ramps = stages.masked_norms(model)  # MSG ramps to move each step (found once, not per step)

    @property
    def stage_config(self):
        return self.plan.stages[self.stage - 1] if self.stage else None

    def advance(self) -> list[dict[str, Any]]:
        """Before the optimizer step that starts at ``self.step``: enter every stage due, and a
        ReLoRA restart when one is due. Returns what changed, for events and the log."""
        changes = []
        while self.stage < len(self.plan.stages) and self.plan.stages[self.stage].at_step <= self.step:
            old_model, old_opt = self.raw_model, self.opt
            before = self.probe_loss(old_model)
            model, tr = stages.enter(old_model, self.plan, self.stage + 1, self.vocab)
            self.stage = tr.stage
            self._install(model)
            after = self.probe_loss(self.raw_model)
            stages.carry_optimizer_state(old_opt, old_model, self.opt, model, tr.mapping)
            total, trainable = stages.param_counts(model)
            st = self.plan.stages[self.stage - 1]
            changes.append({"stage": self.stage, "stages": len(self.plan.stages), "name": st.name,
                            "description": st.describe(), "params": total, "params_trainable": trainable,
                            "merged_adapters": tr.merged_adapters, "adapters": tr.adapters,
                            "loss_before": before, "loss_after": after})
        j = stages.relora_restart_due(self.stage_config, self.step) if not self.merged else 0  # merged: none left
        if j:
            n = stages.restart_adapters(self.raw_model, self.opt, self.cfg, self.stage, j)
            total, trainable = stages.param_counts(self.raw_model)
            changes.append({"stage": self.stage, "stages": len(self.plan.stages), "restart": j,
                            "description": f"ReLoRA restart {j}: {n} adapters merged and re-initialised",
                            "params": total, "params_trainable": trainable})
        if self._ramps:
            stages.set_ramps(self._ramps, self.stage_config, self.step)
        return changes

    @torch.no_grad()
    def probe_loss(self, model) -> float | None:
        """The LM loss on one fixed held-out batch (the running validation's first), in eval
        mode: a stage records it just before and just after its change, so "growth did not jump
        the loss" can be read off one's own run. None under FSDP (a forward needs every rank)."""
        if self.sharded or len(self.eval_offsets) == 0:
            return None
        x, y = self.batch(self.data.val, self.eval_offsets[: self.cfg.train.batch_size])
        was = model.training
        model.eval()
        with self.autocast():
            logits = model(x).logits.float()
        model.train(was)
        return float(model.token_losses(logits, y).mean())

    def finish_adapters(self) -> int:
        """At the end of the run: merge the last stage's adapters when it asks to (merge = true)."""
        st = self.stage_config
        if st is None or not st.lora.enabled() or not st.lora.merge or self.merged:
            return 0
        n = stages.merge_adapters(self.raw_model)
        self.merged = True
        stages.set_trainable(self.raw_model, None)
        self._install(self.raw_model)
        return n

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

    @property
    def tokens_per_step(self) -> int:
        """Global: every rank's micro-batches."""
        return self.cfg.tokens_per_rank * self.dist.world

    def _rewind(self) -> None:
        """Forget the batches built ahead; the next one drawn is for the current step."""
        self.batches.rewind()
        self._draw_step = self.step

    def _stream_layout(self) -> tuple[int, int]:
        """(tokens per stream, segments per pass over it): the training split cut into one
        contiguous stream per batch row of every rank and micro-batch (Transformer-XL's batchify)."""
        t, T = self.cfg.train, self.cfg.model.block_size
        rows = self.dist.world * t.grad_accum * t.batch_size
        length = len(self.data.train) // rows
        if length < T + 1:
            raise stages.ConfigError("[model.memory]", "kind", f"a memory reads {rows} contiguous streams of the "
                                     f"training split ({len(self.data.train):,} tokens: {length} each), shorter than "
                                     f"one segment ({T + 1}); use more data or a smaller batch")
        return length, (length - 1) // T

    def _stream_offsets(self) -> list[torch.Tensor]:
        """Each row's next segment of its stream, in order: row r of step s reads its stream at
        (s mod segments per pass) x block_size."""
        t, T = self.cfg.train, self.cfg.model.block_size
        length, per = self._stream_layout()
        segment = self._draw_step % per
        self._draw_step += 1
        rows = self.dist.world * t.grad_accum * t.batch_size
        starts = torch.arange(rows) * length + segment * T
        first = self.dist.rank * t.grad_accum
        return [starts[(first + m) * t.batch_size: (first + m + 1) * t.batch_size] for m in range(t.grad_accum)]

    def _memory_of(self, micro: int) -> list:
        if micro not in self._memory:
            self._memory[micro] = self.raw_model.new_memory(training=True)
        return self._memory[micro]

    def step_offsets(self) -> list[torch.Tensor]:
        """This rank's micro-batches of the next step. One global draw of world x grad_accum x
        batch_size windows, rank r taking micro-batches r*grad_accum ..: two ranks of batch b
        see exactly what one process with grad_accum 2 sees, and every rank keeps the same
        generator state (the data position in a checkpoint is the same whoever saved it)."""
        if self.streams:
            return self._stream_offsets()
        t = self.cfg.train
        high = window_count(len(self.data.train), self.cfg.model.block_size)
        offsets = torch.randint(high, (self.dist.world * t.grad_accum * t.batch_size,), generator=self.batch_gen)
        first = self.dist.rank * t.grad_accum
        return [offsets[(first + m) * t.batch_size: (first + m + 1) * t.batch_size] for m in range(t.grad_accum)]

    # -- one optimizer step ---------------------------------------------------------------
    def train_step(self, want_metrics: bool = False, grad_norms: bool = True
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One optimizer step. ``want_metrics``: this is a log step (hidden-state norms, global
        grad norm and clip factor, the model's named metrics, and what [log] switches on);
        ``grad_norms``: also the per-module gradient norms, before clipping."""
        t, lg = self.cfg.train, self.cfg.log
        self.opt.set_lr(self.lr_factor(self.step))
        progress = self.step / t.max_steps
        loss_sum: torch.Tensor | None = None  # the LM loss: train/loss, comparable with validation
        objective: torch.Tensor | None = None  # the weighted sum optimized, when other losses weigh in
        metrics: dict[str, torch.Tensor] = {}
        samples = self.opt.samples()  # IVON: posterior samples per step; otherwise 1
        batches = self.batches.next()
        share = 1.0 / (t.grad_accum * samples)
        if self.streams and self.step % self._stream_layout()[1] == 0:  # the streams start over: nothing before
            self._memory = {}
        for sample in range(samples):
            last_sample = sample == samples - 1
            with self.opt.sampling():
                if sample:
                    self.opt.zero_grad()  # IVON has taken the previous sample's gradient
                for micro, (x, y) in enumerate(batches):
                    last = last_sample and micro == t.grad_accum - 1
                    # ranks average gradients once per sample, on its last micro-batch
                    quiet = self.dist.enabled and micro < t.grad_accum - 1
                    if self.sharded:
                        self.raw_model.set_requires_gradient_sync(not quiet)
                    with self.ddp.no_sync() if quiet and self.ddp is not None else contextlib.nullcontext():
                        with self.autocast():
                            more = {"memory": self._memory_of(micro)} if self.streams else {}
                            out = self.model(x, y, progress=progress, metrics=want_metrics and last, **more)
                        self.scaler.scale(out.loss / t.grad_accum if t.grad_accum > 1 else out.loss).backward()
                    lm = out.losses["ce"].detach()
                    part = lm * share if share != 1.0 else lm
                    loss_sum = part if loss_sum is None else loss_sum + part
                    if out.loss is not out.losses["ce"]:
                        objective = (objective if objective is not None else 0.0) + out.loss.detach() * share
                    for name, value in out.losses.items():
                        self._accumulate(debug_loss(name), value.detach() * share if share != 1.0 else value.detach())
                    if want_metrics and last:
                        metrics.update(self._forward_metrics(out))
                total, before_clip = self._before_step(want_metrics, want_metrics and grad_norms)
        if t.grad_clip > 0:  # every step: the share of steps clipped over the interval
            self._accumulate(CLIPPED, (_full(total) > t.grad_clip).float())
            self._interval_counts[CLIPPED] = self._interval_counts.get(CLIPPED, 0) + 1
        if want_metrics:
            metrics[GRAD_NORM] = total
            metrics.update(before_clip)
            if t.grad_clip > 0:  # what clip_grad_norm_ multiplied every gradient by (1: untouched)
                metrics[CLIP_FACTOR] = torch.clamp(t.grad_clip / (_full(total) + 1e-6), max=1.0)
        weights_before = self._weights() if want_metrics and lg.update_ratios else None
        for opt in self.opt.optimizers:
            self.scaler.step(opt)
        self.scaler.update()
        self.opt.zero_grad()
        if weights_before is not None:
            metrics.update(self._update_ratios(weights_before))
        if want_metrics and lg.weight_norms:
            for name, params in self.groups.items():
                if params:
                    metrics[weight_norm(name)] = _norm_of(params)
        if want_metrics and self.sharded:  # norms of sharded tensors are partial on each rank: combine them
            metrics = {k: _full(v) for k, v in metrics.items()}
        for hook in self.hooks:
            hook.after_step(self)
        self.step += 1
        self.tokens_seen += self.tokens_per_step
        self._interval[TRAIN_LOSS] += loss_sum
        if objective is not None:
            self._accumulate(OBJECTIVE, objective)
            self._interval_counts[OBJECTIVE] = self._interval_counts.get(OBJECTIVE, 0) + 1
        self._interval_steps += 1
        for name in out.losses:  # a loss can come and go (T12's are dropped on a schedule)
            self._interval_counts[name] = self._interval_counts.get(name, 0) + 1
        self._track_divergence(objective if objective is not None else loss_sum)
        return loss_sum, metrics

    def _forward_metrics(self, out) -> dict[str, torch.Tensor]:
        """A log step's figures from its last forward: the residual stream before and after the
        final norm (before it is where growth shows; after it sits near sqrt(d) by design), the
        model's named statistics and, with log.logit_stats, the logits' size."""
        metrics = {HIDDEN_NORM: out.stream.detach().float().norm(dim=-1).mean(),
                   HIDDEN_NORM_NORMED: out.hidden.detach().float().norm(dim=-1).mean()}
        metrics.update({debug(k): v for k, v in out.metrics.items()})
        if self.cfg.log.logit_stats:
            logits = out.logits.detach().float()
            metrics[LOGIT_NORM] = logits.norm(dim=-1).mean()
            metrics[LOGIT_MAX] = logits.max()
        return metrics

    def _weights(self) -> dict[str, list[torch.Tensor]]:
        """A copy of the trainable weights by module group (log steps only: one copy of the model)."""
        return {name: [p.detach().clone() for p in params if p.requires_grad] for name, params in self.groups.items()}

    def _update_ratios(self, before: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
        """||W_after - W_before|| / ||W_before|| per module group: how far this step moved it."""
        out = {}
        for name, params in self.groups.items():
            old = before.get(name)
            new = [p for p in params if p.requires_grad]
            if old and len(old) == len(new):
                out[update_ratio(name)] = _norm_of([p.detach() - o for p, o in zip(new, old)]) / (_norm_of(old) + 1e-12)
        return out

    def _before_step(self, want_metrics: bool, module_norms: bool) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Unscale, measure, clip and transform the gradients (inside IVON's sampling context:
        it collects them as it leaves). Returns the global norm before clipping and, when asked,
        each module group's norm before clipping: both describe the gradient the loss produced,
        so they combine (root of the sum of squares) to the global one."""
        t = self.cfg.train
        if t.grad_clip > 0 or want_metrics or self.cfg.optim.orthograd:
            for opt in self.opt.optimizers:
                self.scaler.unscale_(opt)
        groups = {}
        for name, params in self.groups.items() if module_norms else ():
            norm = group_norm(params)
            if norm is not None:
                groups[grad_norm(name)] = norm
        total = None
        if t.grad_clip > 0:
            total = torch.nn.utils.clip_grad_norm_(self.params, t.grad_clip)
        elif want_metrics:
            total = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        for hook in self.hooks:
            hook.before_step(self)
        return total, groups

    def _accumulate(self, name: str, value: torch.Tensor) -> None:
        acc = self._interval.get(name)
        if acc is None:
            acc = self._interval[name] = torch.zeros((), device=self.device)
        acc += value

    def _track_divergence(self, loss: torch.Tensor) -> None:
        if self._window_n == DIVERGENCE_WINDOW:  # nobody read it for a while (bench, tests): read it now
            self.divergence()
        self._window[self._window_n] = loss.detach()
        self._window_n += 1

    def divergence(self) -> tuple[int, str, float] | None:
        """(step, 'nan' or 'inf', last finite loss) of the first non-finite loss, or None.
        Reads the window of losses since the last call (one host sync)."""
        if self._bad is None and self._window_n:
            losses = self._window[: self._window_n].float().cpu()
            bad = (~torch.isfinite(losses)).nonzero()
            if len(bad):
                i = int(bad[0])
                value = float(losses[i])
                last = float(losses[i - 1]) if i else self._last_finite
                self._bad = (self._window_start + i + 1, "nan" if math.isnan(value) else
                             ("inf" if value > 0 else "-inf"), last)
            else:
                self._last_finite = float(losses[-1])
            self._window_start += self._window_n
            self._window_n = 0
        return self._bad

    def lr_factor(self, step: int) -> float:
        """The schedule of the stage in force (a stage with [stage.optim] keys starts its own),
        times ReLoRA's ramp after a restart."""
        k = self.plan.index_at(step)
        return lr_factor(self.plan.configs[k], step - self.plan.origins[k]) * stages.relora_ramp(
            self.plan.stages[k - 1] if k else None, step)

    def interval_means(self) -> dict[str, float]:
        """Mean losses since the last call (one host sync), then start a new interval."""
        n = max(1, self._interval_steps)
        self.dist.mean_([self._interval[k] for k in sorted(self._interval)])  # every rank's share of the batch
        out = {TRAIN_LOSS: self._interval[TRAIN_LOSS].item() / n}
        for name, count in self._interval_counts.items():
            key = name if name.startswith(TRAIN + "/") else debug_loss(name)
            out[key] = self._interval[key].item() / count
        for v in self._interval.values():
            v.zero_()
        self._interval_steps = 0
        self._interval_counts = {}
        return out

    @property
    def lr(self) -> float:
        step = max(0, self.step - 1)
        return self.plan.configs[self.plan.index_at(step)].optim.lr * self.lr_factor(step)

    # -- evaluation -----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, offsets: torch.Tensor, head_stats: bool = False, posterior_samples: int = 0,
                 split: np.ndarray | None = None, skip: torch.Tensor | None = None,
                 progress: Callable[[int, int], None] | None = None) -> EvalResult:
        """Loss and bits per byte over the windows at ``offsets`` of a split (validation unless
        given); with ``skip``, the first skip[i] positions of window i are context only, not
        scored (sliding-window evaluation); with ``head_stats``, each named head's statistics;
        with ``posterior_samples`` (IVON), also the loss of the posterior predictive
        (probabilities averaged over sampled weights)."""
        split = self.data.val if split is None else split
        model = self.raw_model  # eager: eval batch shapes differ and must not trigger recompiles
        model.eval()
        nats = torch.zeros((), dtype=torch.float64, device=self.device)
        post_nats = torch.zeros((), dtype=torch.float64, device=self.device)
        nbytes = torch.zeros((), dtype=torch.int64, device=self.device)
        count = 0
        heads = {n: h for n, h in model.heads.items() if head_stats and not h.training_only}
        outputs: dict[str, list] = {n: [] for n in heads}
        correct, token_loss = [], []
        B = self.cfg.train.batch_size
        posterior = posterior_samples if self.opt.ivon else 0
        for i in range(0, len(offsets), B):
            if progress is not None:
                progress(i, len(offsets))  # (windows done, windows in all): the caller decides how often to say
            x, y = self.batch(split, offsets[i: i + B])
            with self.autocast():
                out = model(x)
            logits = out.logits.float()
            if skip is not None:  # context-only positions get target -1: no loss, no bytes, not counted
                pos = torch.arange(y.size(1), device=y.device)
                y = y.masked_fill(pos[None, :] < skip[i: i + B, None].to(y.device), -1)
            per_token = model.token_losses(logits, y)
            nats += per_token.sum().double()
            scored = y >= 0
            nbytes += (self.byte_lengths[y.clamp_min(0)] * scored).sum()
            count += int(scored.sum()) if skip is not None else y.numel()
            if heads and count <= MAX_STAT_TOKENS:
                feats = Features(out.hidden, out.lm_input, model.lm_head.weight)
                for name, head in heads.items():
                    outputs[name].append(head.output(feats).reshape(-1).float().cpu())
                correct.append((logits.argmax(-1) == y).reshape(-1).cpu())
                token_loss.append(per_token.reshape(-1).cpu())
                if skip is not None:  # (head statistics come from non-overlapping passes; keep shapes aligned)
                    keep = scored.reshape(-1).cpu()
                    correct[-1], token_loss[-1] = correct[-1][keep], token_loss[-1][keep]
                    for name in outputs:
                        outputs[name][-1] = outputs[name][-1][keep]
            if posterior:
                probs = torch.zeros_like(logits)
                for _ in range(posterior):
                    with self.opt.optimizers[0].sampled_params(train=False), self.autocast():
                        probs += model.probs(model(x).logits.float())
                picked = (probs / posterior).gather(-1, y.clamp_min(0).unsqueeze(-1)).squeeze(-1)
                post_nats -= (torch.log(picked.clamp_min(1e-30)) * (y >= 0)).sum().double()
        model.train()
        loss = nats.item() / max(1, count)
        bpb = nats.item() / math.log(2) / max(1, int(nbytes.item()))
        stats = {}
        if heads and correct:
            c, l = torch.cat(correct).numpy(), torch.cat(token_loss).numpy()
            stats = {name: heads[name].eval_stats(torch.cat(v).numpy(), c, l) for name, v in outputs.items()}
        extra = {"posterior_loss": post_nats.item() / max(1, count)} if posterior else None
        bpc = nats.item() / math.log(2) / max(1, count) if self.tokenizer.name == "bytes" else None
        return EvalResult(loss, bpb, count, stats or None, extra, bpc)

    @torch.no_grad()
    def evaluate_memory(self, split: np.ndarray | None = None) -> EvalResult:
        """Transformer-XL's evaluation: the split cut into batch_size contiguous streams, each read
        segment by segment in order with the memory carried across (the evaluation memory,
        eval_mem_len), every token scored once. final_max_batches caps the segments per stream."""
        split = self.data.val if split is None else split
        model = self.raw_model
        T, B = self.cfg.model.block_size, self.cfg.train.batch_size
        length = len(split) // B
        B = B if length >= 2 else 1
        length = len(split) // B
        cap = self.cfg.eval.final_max_batches
        memory = model.new_memory(training=False)
        model.eval()
        nats = torch.zeros((), dtype=torch.float64, device=self.device)
        nbytes = torch.zeros((), dtype=torch.int64, device=self.device)
        count = 0
        for k, start in enumerate(range(0, length - 1, T)):
            if cap and k >= cap:
                break
            n = min(T, length - 1 - start)
            rows = np.stack([split[b * length + start: b * length + start + n + 1] for b in range(B)]).astype(np.int64)
            xy = torch.from_numpy(rows).to(self.device)
            x, y = xy[:, :-1], xy[:, 1:]
            with self.autocast():
                logits = model(x, memory=memory).logits.float()
            nats += model.token_losses(logits, y).sum().double()
            nbytes += self.byte_lengths[y].sum()
            count += y.numel()
        model.train()
        loss = nats.item() / max(1, count)
        bpb = nats.item() / math.log(2) / max(1, int(nbytes.item()))
        bpc = loss / math.log(2) if self.tokenizer.name == "bytes" else None
        return EvalResult(loss, bpb, count, bpc=bpc)

    def full_val_offsets(self, split: np.ndarray | None = None) -> torch.Tensor:
        """Non-overlapping windows over a whole split, validation by default (capped by
        final_max_batches)."""
        T = self.cfg.model.block_size
        n = len(self.data.val if split is None else split)
        offsets = torch.arange(0, n - T - 1 + 1, T)
        cap = self.cfg.eval.final_max_batches * self.cfg.train.batch_size
        return offsets[:cap] if cap else offsets

    def sliding_offsets(self, split: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows every ``stride`` tokens over a whole split, and how many leading positions of
        each are context only: the first window scores all of its positions, every later one
        its last ``stride``, so each token is scored once, with at least block_size - stride
        tokens before it (except in the first window). Capped like the full pass."""
        T, s = self.cfg.model.block_size, self.cfg.eval.stride
        n = len(self.data.val if split is None else split)
        offsets = torch.arange(0, n - T - 1 + 1, s)
        skip = torch.full_like(offsets, T - s)
        skip[0] = 0
        cap = self.cfg.eval.final_max_batches * self.cfg.train.batch_size
        return (offsets[:cap], skip[:cap]) if cap else (offsets, skip)

    def sample(self, seed: int) -> str:
        e = self.cfg.eval
        prompt = self.tokenizer.encode(e.sample_prompt) if e.sample_prompt else [self.tokenizer.eot]
        g = torch.Generator(device=self.device).manual_seed(seed)  # never the training RNG
        self.raw_model.eval()
        settings = Sampling(max_tokens=e.sample_tokens, temperature=e.temperature, top_k=e.top_k)
        ids = [s.id for s in sample_tokens(self.raw_model, prompt, settings, generator=g,
                                           vocab_limit=self.tokenizer.vocab_size)]
        self.raw_model.train()
        return e.sample_prompt + self.tokenizer.decode(ids)

    # -- checkpoint state -----------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "batch": self.batches.position()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        if self.sharded:  # gathered whole on rank 0 (every rank takes part), as a plain checkpoint
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

            model_state, optim_state = get_state_dict(self.raw_model, self.opt.optimizers,
                                                      options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            optim_state = {"fsdp": optim_state}
        else:
            model_state, optim_state = self.raw_model.state_dict(), self.opt.state_dict()
        return {
            "model": model_state,
            "optim": optim_state,
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "rng": rng,
            "config": resolved_dict(self.base_cfg),
            "stage": self.stage,
            "merged": self.merged,  # the stage's adapters were merged at the end of the run
            "tokenizer": self.tokenizer.name,
            "vocab_size": self.tokenizer.vocab_size,
            # the streams' memories (a memory kind): a resume goes on with what the segments left
            "memory": [[st.state_dict() for st in self._memory[k]] for k in sorted(self._memory)] if self._memory else None,
        }

    def load_state(self, payload: dict[str, Any]) -> None:
        k, merged = int(payload.get("stage", 0)), bool(payload.get("merged", False))
        if k > len(self.plan.stages):
            raise stages.ConfigError("checkpoint", "stage", f"the checkpoint is at stage {k} but the config has "
                                                            f"{len(self.plan.stages)} stages")
        if (k, merged) != (self.stage, self.merged):  # rebuild that stage's model, then load into it
            self.stage, self.merged = k, merged
            model = stages.build(self.plan, k, self.vocab, self.device, merged=merged)
            if merged:
                stages.set_trainable(model, None)
            self._install(model)
        written_sharded = isinstance(payload["optim"], dict) and "fsdp" in payload["optim"]
        if self.sharded and not written_sharded:
            raise stages.ConfigError("checkpoint", "[train] fsdp", "the checkpoint was written without FSDP (its "
                                     "optimizer state is laid out per parameter); resume it with fsdp = false")
        if written_sharded:  # whole tensors keyed by name: they load into a sharded or a plain model alike
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

            set_state_dict(self.raw_model, self.opt.optimizers, model_state_dict=payload["model"],
                           optim_state_dict=payload["optim"]["fsdp"], options=StateDictOptions(full_state_dict=True))
        else:
            self.raw_model.load_state_dict(payload["model"])
            self.opt.load_state_dict(payload["optim"])
        if payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.step = int(payload["step"])
        self._window_n, self._window_start = 0, self.step
        self.tokens_seen = int(payload.get("tokens_seen", 0))
        rng = payload["rng"]
        # generator states are CPU byte tensors, whatever device the checkpoint was mapped to
        # (loaded onto the GPU, they were refused: resuming on CUDA failed; found on an H200)
        torch.set_rng_state(rng["torch"].cpu())
        self._rewind()
        self.batch_gen.set_state(rng["batch"].cpu())
        self._memory = {}
        for micro, states in enumerate(payload.get("memory") or []):  # the streams' memories, as they were
            mine = self._memory_of(micro)
            for state, saved in zip(mine, states):
                state.load_state_dict({k: v.to(self.device) if v is not None else None for k, v in saved.items()})
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"]])

    def summary(self) -> dict[str, Any]:
        m = self.cfg.model
        counts = count_params(m, self.tokenizer.vocab_size, self.has_conviction, self.cfg.aux)
        total, trainable = stages.param_counts(self.raw_model)
        return {
            "stage": self.stage,
            "stages": len(self.plan.stages),
            "params_trainable": trainable,
            "params": self.raw_model.num_params(),
            "params_non_embedding": self.raw_model.num_params(non_embedding=True),
            "params_aux": counts["aux"],  # training-only classifiers (T12), among the non-embedding ones
            "device": str(self.device),
            "precision": self.cfg.train.precision,
            "compile": self.compiled,
            "compile_reason": self.compile_reason,
            "tokenizer": self.tokenizer.name,
            "vocab_size": self.tokenizer.vocab_size,
            "label": model_label(m),
            "kinds": {"attention": m.attention.kind, "ffn": m.ffn.kind, "block": m.block.kind,
                      "memory": m.memory.kind, "shape": m.shape.kind},
            "model": f"{model_label(m)}: {m.n_head}h x{self.cfg.head_dim} {m.attention.kind} attention "
                     f"({m.attention.pattern}), {m.ffn.kind} ffn {self.cfg.d_ff} {m.ffn.activation}"
                     f"{' gated' if m.ffn.gated else ''}, {m.block.kind} blocks, {m.norm} pos={m.pos} "
                     f"ctx={m.block_size}",
            "params_expected": counts["total"],
            "kv_cache_per_token": cache_per_token(m),
            "tokens_per_step": self.tokens_per_step,
            "world_size": self.dist.world,  # ranks; batch_size is per rank, tokens_per_step global
            "train_tokens": len(self.data.train),
            "val_tokens": len(self.data.val),
            "flops_per_token": self.flops_per_token,
            "peak_flops": self.peak_flops,
            "peak_source": self.peak_source,
            "optimizer": self.cfg.optim.name + (" + orthograd" if self.cfg.optim.orthograd else ""),
        }
