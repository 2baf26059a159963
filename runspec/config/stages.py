"""Starting points and stages, as config: ``[init] from`` and ``[[stage]]`` (torch-free, so the
cockpit checks them before anything runs).

A run is a sequence of stages. Stage 0 is the run's own ``[model]``/``[train]``/``[optim]``;
each ``[[stage]]`` starts at ``at_step`` and may grow the model, add LoRA adapters, freeze
parts and override training keys. ``plan.stage_plan`` resolves every stage to the full RunConfig
it trains under, so the engine, the checks and the cockpit agree on shapes and schedules.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# The stage keys a [[stage]] may override: what changes the optimization, never what the run is
STAGE_TRAIN_KEYS = ("batch_size", "grad_accum", "grad_clip")
STAGE_OPTIM_EXCLUDED = ("name",)  # the optimizer's kind is the run's: its state carries across stages


@dataclass
class InitConfig:
    """Start from another run's weights: "RUN" (its newest checkpoint), "RUN:STEP", a run
    directory, or a checkpoint file (an exported one too). Tensors the parent lacks (new heads,
    adapters) keep their fresh init; a tensor whose shape differs is an error."""

    from_: str = field(default="", metadata={"key": "from"})  # a run (id, prefix or directory, optionally RUN:STEP) or a checkpoint file to start from


@dataclass
class GrowConfig:
    """Function-preserving growth: the grown model first computes what the old one did; 0 leaves a size as it is."""

    n_layer: int = 0  # grow to this many blocks (0: unchanged)
    positions: list[int] = field(default_factory=list)  # indices of the new blocks in the grown model; [] spreads them evenly
    d_model: int = 0  # grow to this width (0: unchanged)
    n_head: int = 0  # more heads of the same size (d_model growth adds heads to keep the head size)
    d_ff: int = 0  # MLP hidden width
    ramp_steps: int = 100  # layernorm + d_model growth: masked statistics ramp to full over these steps (MSG)

    def any(self) -> bool:
        return bool(self.n_layer or self.d_model or self.n_head or self.d_ff)


@dataclass
class LoraConfig:
    """Low-rank adapters (LoRA, ReLoRA) on the named matrices of every block. Only the
    adapters (and ``unfreeze`` patterns) train; the rest of the model is frozen."""

    rank: int = 0  # 0: no adapters
    alpha: float = 16.0  # the update is (alpha / rank) B A
    dropout: float = 0.0  # on the adapters' input
    targets: list[str] = field(default_factory=lambda: ["qkv", "proj", "up", "down"])  # matrices that get adapters (each kind names its own: see the zoo)
    unfreeze: list[str] = field(default_factory=list)  # parameter-name patterns that train beside the adapters
    merge: bool = True  # merge into the weights at the end of the run (between stages they are always merged)
    relora_every: int = 0  # ReLoRA: merge, re-initialise and reset the adapters' optimizer state every N steps
    relora_warmup: int = 50  # ReLoRA: the learning rate ramps from 0 back to the schedule over these steps

    def enabled(self) -> bool:
        return self.rank > 0


@dataclass
class StageConfig:
    at_step: int = 0  # the step the stage begins at (0: from the start)
    name: str = ""  # shown in the TUI and the stage event
    grow: GrowConfig = field(default_factory=GrowConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    freeze: list[str] = field(default_factory=list)  # parameter-name patterns (fnmatch: "blocks.0.*", "wte.*")
    train: dict[str, Any] = field(default_factory=dict)  # overrides: batch_size, grad_accum, grad_clip
    optim: dict[str, Any] = field(default_factory=dict)  # overrides: lr, warmup_steps, schedule... (a new schedule)

    def describe(self) -> str:
        parts = []
        g = self.grow
        for key in ("n_layer", "d_model", "n_head", "d_ff"):
            if getattr(g, key):
                parts.append(f"{key} {getattr(g, key)}")
        if self.lora.enabled():
            parts.append(f"LoRA r{self.lora.rank} on {'/'.join(self.lora.targets)}"
                         + (f", ReLoRA every {self.lora.relora_every}" if self.lora.relora_every else ""))
        if self.freeze:
            parts.append(f"freeze {', '.join(self.freeze)}")
        overrides = {**self.train, **self.optim}
        if overrides:
            parts.append(", ".join(f"{k} {v}" for k, v in overrides.items()))
        return "; ".join(parts) or "no change"


def parse_ref(ref: str) -> tuple[str, int | None]:
    """'RUN' or 'RUN:STEP' (a path may hold colons before the last one)."""
    head, sep, tail = ref.rpartition(":")
    if sep and tail.isdigit() and head:
        return head, int(tail)
    return ref, None


def grown_model(m: Any, g: GrowConfig) -> Any:
    """The ModelConfig after growth: the head size stays (heads are added instead), and a
    d_model growth scales the MLP width with it (the ratio stays) unless grow.d_ff is given.
    The width is written out: resolved.toml already holds it as a number, and the rule must
    give the same model from the user's config and from the resolved one."""
    head_dim = m.head_dim or m.d_model // m.n_head
    d_model = g.d_model or m.d_model
    n_head = g.n_head or (d_model // head_dim if g.d_model and d_model % head_dim == 0 else m.n_head)
    width = m.ffn.width(m)
    d_ff = g.d_ff or (round(width * d_model / m.d_model) if g.d_model else width)
    ffn = dataclasses.replace(m.ffn, d_ff=d_ff) if d_ff != width or g.d_model else m.ffn
    changed = d_model != m.d_model or n_head != m.n_head
    return dataclasses.replace(m, n_layer=g.n_layer or m.n_layer, d_model=d_model, n_head=n_head,
                               head_dim=head_dim if changed else m.head_dim, ffn=ffn)


def new_positions(old: int, new: int, given: list[int]) -> list[int]:
    """Indices of the inserted blocks in the grown stack: as given, or spread evenly (4 -> 8:
    a new block after each old one)."""
    if given:
        return sorted(given)
    added = new - old
    if added <= 0:
        return []
    # old block j keeps the order; the new ones go after old blocks spread over the depth
    after = [round((i + 1) * old / added) - 1 for i in range(added)]
    out, shift = [], 0
    for j in range(old):
        for _ in range(after.count(j)):
            shift += 1
            out.append(j + shift)
    return out


def lora_target_names(m: Any) -> list[str]:
    """The matrices of every block that LoRA may adapt: what the model's kinds name."""
    return m.attention.lora_targets() + m.ffn.lora_targets()
