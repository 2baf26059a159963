"""The GPT, composed from the kinds: embeddings, a list of blocks (each an attention kind and a
feed-forward kind in a block kind, built by zoo/modules.py), the final norm, the
LM head and the named heads. It returns logits plus named losses and metrics; the trainer
sums and logs them without knowing any by name."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from engine.model.aux import AuxHeads
from engine.model.heads import ConvictionHead, Features, Head
from engine.model.losses import mean_loss, next_token_probs, token_losses
from engine.model.roles import param_table
from runspec.config.schema import AuxConfig, ConvictionConfig, ModelConfig
from runspec.config.shape import flops_per_token, padded_vocab
from zoo.block.ngpt.module import ngpt_normalize
from zoo.kind import Regime, width_multiplier
from zoo.memory.module import DecodeMemory, SegmentMemory
from zoo.modules import build_block, module_for
from zoo.shape.module import Caches
from zoo.nn.collect import Collector
from zoo.nn.layers import Scale, unit
from zoo.nn.norms import make_norm
from zoo.nn.positions import LearnedPositions


class Output(NamedTuple):
    logits: torch.Tensor  # (B, T, V)
    loss: torch.Tensor | None  # what is optimized: the weighted sum of ``losses``
    hidden: torch.Tensor  # final normed hidden state (B, T, d): what heads other than the LM head read
    lm_input: torch.Tensor  # the state fed to the LM head (after the output projection, if any)
    conviction: torch.Tensor | None = None  # (B, T) when the model has a conviction head
    losses: dict[str, torch.Tensor] = {}  # by name, unweighted: "ce", "conviction", "moe_balance", ...
    weights: dict[str, float] = {}  # the weight each loss had in ``loss``
    metrics: dict[str, torch.Tensor] = {}  # by name (moe/load_max, ...), when asked for
    stream: torch.Tensor | None = None  # the residual stream before the final norm (training forwards)

    @property
    def ce_loss(self) -> torch.Tensor | None:
        return self.losses.get("ce")

    @property
    def conviction_loss(self) -> torch.Tensor | None:
        return self.losses.get("conviction")


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, conviction: ConvictionConfig | None = None,
                 aux: AuxConfig | None = None):
        super().__init__()
        self.cfg, self.vocab_size = cfg, vocab_size
        self.regime = Regime.of(cfg)
        self.ngpt = self.regime.ngpt
        self.wte = nn.Embedding(vocab_size, cfg.d_model)
        n_tables = {"learned": 1, "learned_per_layer": cfg.n_layer}.get(cfg.pos, 0)
        self.wpe = LearnedPositions(n_tables, cfg.block_size, cfg.d_model) if n_tables else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(build_block(cfg, i) for i in range(cfg.n_layer))
        self.shape = module_for(cfg.shape)(cfg, cfg.shape)  # how the blocks run along the sequence
        # a memory across segments (Transformer-XL, compressive): one module per layer
        self.memory = nn.ModuleList(module_for(cfg.memory)(cfg, cfg.memory, i) for i in range(cfg.n_layer)) \
            if cfg.memory.active else None
        self.ln_f = None if self.ngpt else make_norm(cfg.norm, cfg.d_model, cfg.bias)
        self.output_projection = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias) if cfg.output_projection else None
        self.output_norm = make_norm(cfg.norm, cfg.d_model, cfg.bias) if cfg.output_projection_norm else None
        # The LM head carries no bias even with bias = true (as GPT-2): a bias would not tie.
        self.lm_head = nn.Linear(cfg.d_model, vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        # nGPT's logit scale s_z: init 1, scale 1/sqrt(d)
        self.s_z = Scale(vocab_size, 1.0, 1.0 / math.sqrt(cfg.d_model)) if self.ngpt else None
        self.heads = build_heads(cfg, vocab_size, conviction, aux)
        self.readout = 1.0 / width_multiplier(cfg)
        self._init_weights()

    def head(self, name: str) -> Head | None:
        return self.heads[name] if name in self.heads else None

    # -- init -------------------------------------------------------------------------------
    @torch.no_grad()
    def _init_weights(self) -> None:
        """Weights by role: matrices, experts, embeddings and heads N(0, std); biases zero;
        gains and scales as their modules made them. Matrices that write into the residual
        stream get std/sqrt(2L) (scaled) or zeros (zero_out). nGPT: std 1/sqrt(d), then every
        matrix is normalized."""
        std = 1.0 / math.sqrt(self.cfg.d_model) if self.ngpt else self.cfg.init_std
        # μP: hidden matrices' init variance falls as 1/fan_in (std / sqrt(m)); embeddings keep theirs
        hidden_std = std / math.sqrt(width_multiplier(self.cfg))
        residual = {id(m.weight) for m in self.modules() if getattr(m, "is_residual_out", False)}
        for m in self.modules():
            for name in getattr(m, "residual_out_params", ()):
                residual.add(id(getattr(m, name)))
        for info in param_table(self):
            p = info.param
            if info.role == "bias":
                nn.init.zeros_(p)
            elif info.role in ("embedding", "position", "lm_head", "matrix", "expert", "router", "head"):
                sd = hidden_std if info.role in ("matrix", "expert") else std
                if id(p) in residual and not self.ngpt and self.cfg.init == "scaled":
                    nn.init.normal_(p, 0.0, sd / math.sqrt(2 * self.cfg.n_layer))  # GPT-2: flat variance in depth
                elif id(p) in residual and not self.ngpt and self.cfg.init == "zero_out":
                    nn.init.zeros_(p)  # each block starts as the identity
                else:
                    nn.init.normal_(p, 0.0, sd)
        if self.cfg.init == "zero_out" and not self.cfg.tie_embeddings and not self.ngpt:
            nn.init.zeros_(self.lm_head.weight)  # uniform predictions at step 0
        if self.ngpt:
            ngpt_normalize(self)

    def after_step(self) -> None:
        """After every optimizer step (nGPT: back onto the sphere)."""
        if self.ngpt:
            ngpt_normalize(self)

    # -- sizes ------------------------------------------------------------------------------
    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel()
            if self.wpe is not None:
                n -= sum(p.numel() for p in self.wpe.parameters())
        return n

    def flops_per_token(self) -> float:
        """Training FLOPs per token, from the kinds (their specs in zoo/): 6 x the weights a token
        is multiplied by (experts: the active ones) + 3 x each layer's attention score FLOPs."""
        return flops_per_token(self.cfg, self.vocab_size)

    # -- forward ----------------------------------------------------------------------------
    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: list | None = None,
                progress: float | None = None, metrics: bool = False, memory: list | None = None) -> Output:
        """``cache``: a decoding's caches (``new_cache``); ``memory``: the layers' memories of the
        streams this batch continues (``new_memory``; a memory kind's training and evaluation)."""
        B, T = idx.shape
        if cache is not None and self.memory is not None and T > cache[0].room:
            # decoding with a memory: a prompt longer than the segment's room goes in segment by segment
            room = cache[0].room
            return _joined(self.forward(idx[:, :room], None, cache), self.forward(idx[:, room:], None, cache))
        offset = cache[0].length if cache is not None and self.memory is None else 0
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(0, T, offset, idx.device)
        if self.ngpt:
            x = unit(x)
        x = self.drop(x)
        collect = Collector(metrics) if targets is not None else None
        # heads that exist for their loss run only in training, with a progress to schedule by
        heads = {n: h for n, h in self.heads.items() if not h.training_only or (targets is not None and progress is not None)}
        layers: list[torch.Tensor] | None = [] if any(h.needs_layers for h in heads.values()) else None

        def after(i: int, x: torch.Tensor) -> torch.Tensor:  # T12: the next layer's positions; the layer taps
            if i + 1 < len(self.blocks) and self.cfg.pos == "learned_per_layer":
                x = x + self.wpe(i + 1, T, offset, idx.device)
            if layers is not None:
                layers.append(x)
            return x

        per_layer = after if layers is not None or self.cfg.pos == "learned_per_layer" else None
        x = self.shape(self.blocks, x, memory if memory is not None else cache, collect, per_layer)
        if memory is not None and collect is not None:
            self._memory_losses(memory, collect)
        hidden = x if self.ln_f is None else self.ln_f(x)
        lm_input = hidden
        if self.output_projection is not None:
            lm_input = self.output_projection(lm_input)
            if self.output_norm is not None:
                lm_input = self.output_norm(lm_input)
        logits = self.lm_head(lm_input)
        if self.readout != 1.0:  # μP: the logits times 1/m, so they do not grow with width
            logits = logits * self.readout
        if self.s_z is not None:
            logits = logits * self.s_z().to(logits.dtype)
        if self.cfg.logit_softcap > 0:
            c = self.cfg.logit_softcap
            logits = c * torch.tanh(logits / c)
        feats = Features(hidden, lm_input, self.lm_head.weight, layers)
        outputs = {name: head.output(feats) for name, head in heads.items() if not head.training_only}
        conviction = outputs.get("conviction")
        if targets is None:
            return Output(logits, None, hidden, lm_input, conviction)
        collect.loss("ce", mean_loss(logits, targets, self.cfg.output), 1.0)
        for name, head in heads.items():
            head.add_losses(outputs.get(name), feats, targets, progress, collect)
        losses, weights = collect.losses(), collect.weights()
        terms = [v if weights[k] == 1.0 else weights[k] * v for k, v in losses.items() if weights[k]]
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return Output(logits, total, hidden, lm_input, conviction, losses, weights, collect.metrics(), x)

    def token_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-token negative log-likelihood (fp32) under the model's output distribution."""
        return token_losses(logits, targets, self.cfg.output)

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        return next_token_probs(logits, self.cfg.output)

    def new_cache(self) -> Caches:
        """A decoding's caches: each layer's KV cache (or its memory, which keeps one), and the
        shape's own state (an hourglass's partial groups)."""
        if self.memory is not None:
            spec = self.cfg.memory
            caches = Caches(DecodeMemory(mod, spec.slots(evaluating=True) - getattr(spec, "cmem_len", 0),
                                         getattr(spec, "cmem_len", 0), self.cfg.block_size) for mod in self.memory)
        else:
            caches = Caches(block.attn.new_cache() for block in self.blocks)
        caches.shape_state = self.shape.new_state()
        return caches

    def new_memory(self, training: bool) -> list:
        """Each layer's memory for a batch of streams read segment by segment: empty at first,
        then what the segments before left (training: the training memory; else the evaluation one)."""
        spec = self.cfg.memory
        cmem = getattr(spec, "cmem_len", 0)
        return [SegmentMemory(mod, spec.slots(evaluating=not training) - cmem, cmem, train=training)
                for mod in self.memory]

    def _memory_losses(self, memory: list, collect: Collector) -> None:
        """The memory kind's named losses (compressive: the reconstruction), averaged over layers."""
        weight = getattr(self.cfg.memory, "recon_weight", 1.0)
        for state in memory:
            for name, value in state.losses.items():
                collect.loss(name, value, weight)  # (the collector averages a name's terms)
            state.losses = {}

    # -- grouping for optimizers and per-module gradient norms ------------------------------
    def module_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by the names used in debug/grad_norm/* (each parameter once)."""
        groups: dict[str, list[nn.Parameter]] = {}
        for info in param_table(self):
            groups.setdefault(info.group, []).append(info.param)
        return groups


def _joined(a: Output, b: Output) -> Output:
    """Two outputs of consecutive pieces of a sequence as one (decoding with a memory)."""
    cat = lambda x, y: None if x is None else torch.cat((x, y), dim=1)  # noqa: E731
    return Output(cat(a.logits, b.logits), None, cat(a.hidden, b.hidden), cat(a.lm_input, b.lm_input),
                  cat(a.conviction, b.conviction))


def build_heads(m: ModelConfig, vocab_size: int, conviction: ConvictionConfig | None,
                aux: AuxConfig | None) -> nn.ModuleDict:
    """The heads a config asks for, by name, in a fixed order (their parameters' order is what
    an optimizer's saved state lines up with)."""
    heads: dict[str, Head] = {}
    if conviction is not None and conviction.enabled:
        heads["conviction"] = ConvictionHead(m.d_model, conviction)
    if aux is not None and aux.enabled(m.n_layer):  # T12: training only
        heads["aux"] = AuxHeads(m, aux, vocab_size)
    return nn.ModuleDict(heads)


# parameter names before the heads were one registry -> now (checkpoints written before still load)
RENAMED = (("conviction_head.", "heads.conviction."), ("aux.", "heads.aux."))


def current_name(name: str) -> str:
    for old, new in RENAMED:
        if name.startswith(old):
            return new + name[len(old):]
    return name


def upgrade_state(state: dict) -> dict:
    """A model state dict (or FSDP's optimizer state, keyed by the same names) with the names
    of older checkpoints brought up to date; an up-to-date one is returned unchanged."""
    if not any(k.startswith(old) for k in state for old, _ in RENAMED):
        return state
    return {current_name(k): v for k, v in state.items()}


def build_model(cfg, vocab_size: int, seed: int | None = None) -> GPT:
    """The one door to a model, for the trainer, stages, completion and the tests alike: a GPT of
    RunConfig ``cfg`` with the vocabulary padded (padding twice changes nothing). With ``seed``
    its init draws from a generator of its own, never moving the training RNG."""
    if seed is None:
        return GPT(cfg.model, padded_vocab(vocab_size), cfg.conviction, cfg.aux)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT(cfg.model, padded_vocab(vocab_size), cfg.conviction, cfg.aux)


__all__ = ["GPT", "Output", "build_model", "padded_vocab", "upgrade_state"]
