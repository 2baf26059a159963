"""Stages at training time: the model and optimizer of each stage, the change from one stage to
the next (merge the previous adapters, finish a LayerNorm ramp, grow, add adapters, freeze),
ReLoRA restarts, and ``[init] from``.

Two paths build a stage's model and must agree exactly: ``enter`` (continuous, during a run:
weights carried over) and ``build`` (a resume: the structure only, then the checkpoint is
loaded). Parameter order is the module order of a GPT of the stage's config in both, so the
optimizer state of a checkpoint lines up.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.model import GPT, build_model, padded_vocab
from engine.model.growth import (
    add_masked_norms,
    grow,
    masked_norms,
    set_rms_eps,
    transfer_optimizer_state,
    unmask_norms,
)
from engine.model.lora import adapters, add_adapters, merge_adapters, merge_and_reinit, merge_state_dict
from runspec.config.load import config_from_dict
from runspec.config.plan import StagePlan, stage_plan
from runspec.config.schema import ConfigError, RunConfig
from runspec.config.stages import StageConfig, new_positions, parse_ref
from zoo.nn.norms import RMS_EPS


def _seed(cfg: RunConfig, stage: int, restart: int = 0) -> int:
    return (cfg.train.seed * 1_000_003 + stage * 7919 + restart * 104_729) % (2**63)


def new_gpt(cfg: RunConfig, vocab: int, seed: int | None = None) -> GPT:
    """A GPT of ``cfg``'s model (through build_model); with ``seed``, its init does not touch the
    training RNG."""
    return build_model(cfg, vocab, seed)


def _grew_d_model(plan: StagePlan, k: int) -> bool:
    """Stage k widened a LayerNorm model: its residual norms are masked (MSG) during the stage."""
    return k > 0 and plan.configs[k - 1].model.norm == "layernorm" \
        and plan.configs[k].model.d_model > plan.configs[k - 1].model.d_model


def _fix_rms_eps(model: nn.Module, plan: StagePlan, k: int) -> None:
    if plan.configs[k].model.d_model != plan.configs[0].model.d_model:
        set_rms_eps(model, RMS_EPS * plan.configs[0].model.d_model / plan.configs[k].model.d_model)


def set_trainable(model: nn.Module, stage: StageConfig | None) -> None:
    """Stage rules: with LoRA only the adapters and ``unfreeze`` patterns train; ``freeze``
    patterns never do; everything else trains. A pattern that names no parameter is an error."""
    names = dict(model.named_parameters())
    lora = stage is not None and stage.lora.enabled()
    freeze = stage.freeze if stage is not None else []
    unfreeze = stage.lora.unfreeze if lora else []

    def hit(n: str, patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(n, p) or n.startswith(p + ".") for p in patterns)

    for key, patterns in (("freeze", freeze), ("lora.unfreeze", unfreeze)):
        for pattern in patterns:
            if not any(hit(n, [pattern]) for n in names):
                top = sorted({n.split(".")[0] for n in names})
                raise ConfigError(f"[[stage]] at_step {stage.at_step}", key,
                                  f"'{pattern}' names no parameter of this model (names look like "
                                  f"blocks.0.attn.qkv.weight; the top level has {', '.join(top)})")

    for n, p in names.items():
        adapter = n.endswith(".lora_A") or n.endswith(".lora_B")
        trainable = (adapter or hit(n, unfreeze)) if lora else True
        p.requires_grad_(trainable and not hit(n, freeze))


def build(plan: StagePlan, k: int, vocab: int, device: torch.device, merged: bool = False) -> GPT:
    """Stage k's model structure (values are loaded from a checkpoint afterwards)."""
    model = new_gpt(plan.configs[k], vocab).to(device)
    stage = plan.stages[k - 1] if k else None
    _fix_rms_eps(model, plan, k)
    if _grew_d_model(plan, k):
        add_masked_norms(model, plan.configs[k - 1].model.d_model)
    if stage is not None and stage.lora.enabled() and not merged:
        lo = stage.lora
        add_adapters(model, lo.targets, lo.rank, lo.alpha, lo.dropout)
    set_trainable(model, stage)
    return model


def check_all(plan: StagePlan, vocab: int) -> None:
    """Build every stage's structure on the meta device (no memory, no compute): a freeze
    pattern that names nothing fails here, before the first step."""
    for k in range(1, len(plan.configs)):
        build(plan, k, vocab, torch.device("meta"))


@dataclass
class Transition:
    stage: int
    merged_adapters: int
    adapters: int
    mapping: dict | None  # growth: new name -> (old name, region), for the optimizer state


def enter(model: GPT, plan: StagePlan, k: int, vocab: int) -> tuple[GPT, Transition]:
    """Continue from stage k-1's ``model`` into stage k: the returned model computes the same
    function (growth is function-preserving, merging and fresh adapters too)."""
    stage = plan.stages[k - 1]
    cfg = plan.configs[k]
    merged = merge_adapters(model)
    unmask_norms(model)
    mapping = None
    if stage.grow.any():
        old_cfg = plan.configs[k - 1].model
        new = new_gpt(cfg, vocab, seed=_seed(cfg, k)).to(next(model.parameters()).device)
        mapping = grow(model, new, new_positions(old_cfg.n_layer, cfg.model.n_layer, stage.grow.positions)
                       if cfg.model.n_layer > old_cfg.n_layer else [])
        model = new
        _fix_rms_eps(model, plan, k)
    n_adapters = 0
    if stage.lora.enabled():
        lo = stage.lora
        g = torch.Generator().manual_seed(_seed(cfg, k))
        n_adapters = add_adapters(model, lo.targets, lo.rank, lo.alpha, lo.dropout, generator=g)
    set_trainable(model, stage)
    return model, Transition(k, merged, n_adapters, mapping)


def carry_optimizer_state(old_opts, old_model: nn.Module, new_opts, new_model: nn.Module, mapping) -> None:
    old_state = {id(p): st for opt in old_opts.optimizers for p, st in opt.state.items()}
    old_params = dict(old_model.named_parameters())
    new_names = {id(p): n for n, p in new_model.named_parameters()}
    transfer_optimizer_state(old_state, old_params, new_opts.optimizers, new_names, mapping)


def relora_restart_due(stage: StageConfig | None, step: int) -> int:
    """The restart number j when a ReLoRA restart happens before the step that starts at
    ``step`` (j >= 1), else 0."""
    if stage is None or not stage.lora.relora_every or step <= stage.at_step:
        return 0
    since = step - stage.at_step
    return since // stage.lora.relora_every if since % stage.lora.relora_every == 0 else 0


def relora_ramp(stage: StageConfig | None, step: int) -> float:
    """ReLoRA's jagged schedule: 0 at each restart, back on the envelope after relora_warmup."""
    if stage is None or not stage.lora.relora_every or step < stage.at_step + stage.lora.relora_every:
        return 1.0
    since = (step - stage.at_step) % stage.lora.relora_every
    w = stage.lora.relora_warmup
    return 1.0 if w == 0 else min(1.0, since / w)


def restart_adapters(model: nn.Module, opts, cfg: RunConfig, k: int, j: int) -> int:
    """Merge, re-initialise (A fresh, B zero) and drop the adapters' optimizer state."""
    g = torch.Generator().manual_seed(_seed(cfg, k, j))
    params = merge_and_reinit(model, g)
    for opt in opts.optimizers:
        for p in params:
            opt.state.pop(p, None)
    return len(params) // 2


def set_ramps(norms: list, stage: StageConfig | None, step: int) -> None:
    """MSG: the masked LayerNorms' ramp at ``step`` (before its update)."""
    if not norms or stage is None:
        return
    value = min(1.0, (step - stage.at_step) / max(1, stage.grow.ramp_steps))
    for norm in norms:
        norm.ramp.fill_(value)


def param_counts(model: nn.Module) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


# -- [init] from -----------------------------------------------------------------------------
def resolve_parent(ref: str, runs_root: Path) -> tuple[Path, int | None, str]:
    """(checkpoint file, its step if known, a label) for an init ref: a checkpoint file, a run
    directory or a run id under ``runs_root``, each optionally ':STEP'."""
    from engine import checkpoint

    name, step = parse_ref(ref)
    p = Path(name).expanduser()
    if p.is_file():
        return p, step, str(p)
    run = p if (p / "state.json").exists() else runs_root / name
    if not (run / "state.json").exists():
        raise ConfigError("[init] from", ref, f"no run or checkpoint file '{name}' (looked in {runs_root}/); "
                                             f"give a run id, a run directory or a .pt file")
    try:
        path = checkpoint.find(run / "checkpoints", step)
    except checkpoint.CheckpointError as e:
        raise ConfigError("[init] from", ref, str(e)) from None
    return path, step, run.name + (f":{step}" if step is not None else "")


def payload_plan(payload: dict[str, Any]) -> tuple[StagePlan, int]:
    """A checkpoint's stage plan and the stage it was written in."""
    return stage_plan(config_from_dict(payload["config"], "checkpoint")), int(payload.get("stage", 0))


def mergeable_state(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A checkpoint's model weights with any adapters folded in (the plain model's keys)."""
    state = payload["model"]
    if any(k.endswith(".lora_A") for k in state):
        plan, k = payload_plan(payload)
        lora = plan.stages[k - 1].lora
        state = merge_state_dict(state, lora.alpha / lora.rank)
    return {k: v for k, v in state.items() if not k.endswith(".ramp")}


@torch.no_grad()
def init_from(model: nn.Module, payload: dict[str, Any], label: str, tokenizer: str, vocab: int) -> list[str]:
    """Copy a parent checkpoint's weights into ``model``. Returns the names of tensors kept at
    their fresh init (the parent has none: a new head, adapters). A tensor whose shape differs
    is an error naming it and both shapes."""
    if payload.get("tokenizer") != tokenizer or int(payload.get("vocab_size", -1)) != vocab:
        raise ConfigError("[init] from", label, f"the parent uses tokenizer '{payload.get('tokenizer')}' "
                                                f"(vocab {payload.get('vocab_size')}), this run '{tokenizer}' "
                                                f"(vocab {vocab}); set [data] tokenizer to match")
    parent = mergeable_state(payload)
    own = model.state_dict()
    fresh = []
    for name, tensor in own.items():
        if name.endswith(".ramp"):
            continue
        src = parent.get(name)
        if src is None:
            fresh.append(name)
            continue
        if src.shape != tensor.shape:
            raise ConfigError("[init] from", label,
                              f"tensor {name} is {tuple(src.shape)} in the parent and {tuple(tensor.shape)} here; "
                              f"keep the parent's shape in [model] and grow it with a [[stage]] at at_step = 0")
        tensor.copy_(src)
    return fresh


def model_from_checkpoint(payload: dict[str, Any], device: torch.device) -> tuple[GPT, RunConfig]:
    """The model a checkpoint was written from (its stage's shape, with unmerged adapters if it
    has them), weights loaded; and that stage's config."""
    plan, k = payload_plan(payload)
    model = build(plan, k, padded_vocab(int(payload["vocab_size"])), device, merged=bool(payload.get("merged")))
    model.load_state_dict(payload["model"])
    return model, plan.configs[k]


def export_merged(payload: dict[str, Any]) -> dict[str, Any]:
    """A plain checkpoint: adapters merged, the stage's model as the run's only shape (no
    stages, no [init]), no optimizer state. Loads in ``cockpit complete`` and as an [init] from."""
    from runspec.config.schema import resolved_dict

    plan, k = payload_plan(payload)
    data = resolved_dict(plan.configs[k])
    data.pop("stage", None)
    data.pop("init", None)
    return {"model": mergeable_state(payload), "step": int(payload["step"]), "config": data,
            "tokenizer": payload["tokenizer"], "vocab_size": payload["vocab_size"],
            "exported_from": {"stage": k, "step": int(payload["step"])}}


__all__ = ["build", "check_all", "enter", "carry_optimizer_state", "relora_restart_due", "relora_ramp",
           "restart_adapters", "set_ramps", "param_counts", "init_from", "resolve_parent", "adapters", "masked_norms",
           "merge_adapters", "model_from_checkpoint", "export_merged"]
