"""Every stage of a run resolved to the full RunConfig it trains under, checked.

``stage_plan`` is what the engine trains by and what the cockpit checks before anything runs,
so both agree on shapes and schedules (see ``stages`` for what a stage may say).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

from runspec.config.schema import ConfigError, check, parse, to_dict
from runspec.config.stages import (
    STAGE_OPTIM_EXCLUDED,
    STAGE_TRAIN_KEYS,
    GrowConfig,
    LoraConfig,
    StageConfig,
    grown_model,
    lora_target_names,
)


@dataclass
class StagePlan:
    """Stage k's full config (0: the run's own) and where its learning-rate schedule starts."""

    configs: list[Any]  # RunConfig per stage
    origins: list[int]  # the step each stage's schedule counts from

    def index_at(self, step: int) -> int:
        """The stage in force for the optimizer step that starts at ``step``."""
        return sum(1 for st in self.stages if st.at_step <= step)

    @property
    def stages(self) -> list[StageConfig]:
        return self.configs[0].stage


def phase(stage: int, stages: int, first_start: int | None) -> str:
    """A run's [[stage]] position as the phases a person counts, 'k/n' (1-based), '' without
    stages: the run's own shape is a phase of its own unless the first stage starts at step 0
    (a LoRA from the start). Stage index 1 of one [[stage]] at step 300 is phase 2/2, not 1/1."""
    if not stages:
        return ""
    own = 0 if first_start == 0 else 1
    return f"{stage + own}/{stages + own}"


def stage_plan(cfg: Any, source: str = "<config>") -> StagePlan:
    """Every stage's RunConfig, checked: a stage that cannot apply is a ConfigError naming it."""
    configs, origins = [cfg], [0]
    prev = cfg
    stages = cfg.stage
    # the order first: a stage's checks read where the next one starts, which means nothing out of order
    for i in range(1, len(stages)):
        st, before = stages[i], stages[i - 1]
        if st.at_step <= before.at_step:
            where = f"[[stage]] {i + 1}" + (f" ({st.name})" if st.name else "")
            raise ConfigError(source, f"{where} at_step", f"found {st.at_step}; stages must start in order, after the "
                                                          f"previous one (at_step {before.at_step}): list them by at_step")
    for i, st in enumerate(stages, start=1):
        where = f"[[stage]] {i}" + (f" ({st.name})" if st.name else "")

        def need(ok: bool, key: str, msg: str) -> None:
            if not ok:
                raise ConfigError(source, f"{where} {key}", msg)

        start = stages[i - 2].at_step if i > 1 else 0
        need(st.at_step < cfg.train.max_steps, "at_step",
             f"found {st.at_step}, beyond the run (train.max_steps = {cfg.train.max_steps}); "
             f"a stage must start before the run ends")
        need(st.at_step >= 0, "at_step", f"found {st.at_step}, must be >= 0")
        need(i == 1 or st.at_step > start, "at_step",
             f"found {st.at_step}; stages must start in order, after the previous one (at_step {start})")
        need(cfg.optim.name != "ivon", "with [optim] name = 'ivon'", "IVON keeps one posterior over all the weights, which a stage would "
                                           "have to rebuild; use adamw or muon for runs with stages")
        m = prev.model
        new_model = _check_growth(st.grow, m, prev, need)
        _check_lora(st.lora, new_model, prev, need)
        data = copy.deepcopy(_asdict_for_stage(prev))
        for key, value in st.train.items():
            need(key in STAGE_TRAIN_KEYS, f"train.{key}",
                 f"a stage may override {', '.join(STAGE_TRAIN_KEYS)} of [train]; the rest belongs to the run")
            data["train"][key] = value
        for key, value in st.optim.items():
            need(key not in STAGE_OPTIM_EXCLUDED, f"optim.{key}",
                 "the optimizer is the run's (its state carries across stages); set it in [optim]")
            data["optim"][key] = value
        end = stages[i].at_step if i < len(stages) else cfg.train.max_steps
        if st.optim and "decay_steps" not in st.optim:
            data["optim"]["decay_steps"] = end - st.at_step  # a new schedule spans its stage
        if st.optim and "warmup_steps" not in st.optim:
            data["optim"]["warmup_steps"] = 0
        try:
            stage_cfg = parse(data, f"{source} {where}")
        except ConfigError as e:
            raise ConfigError(source, f"{where}", str(e).split(": ", 1)[1]) from None
        stage_cfg.model = new_model
        check(stage_cfg, f"{source} {where}")
        if st.lora.relora_every:
            need(st.lora.relora_warmup < st.lora.relora_every, "lora.relora_warmup",
                 f"found {st.lora.relora_warmup}, must be shorter than relora_every ({st.lora.relora_every})")
        if st.grow.d_model and m.norm == "layernorm":  # the ramp reaches 1 before the next stage unmasks it
            default = " (the default)" if st.grow.ramp_steps == GrowConfig().ramp_steps else ""
            need(0 < st.grow.ramp_steps < end - st.at_step, "grow.ramp_steps",
                 f"found {st.grow.ramp_steps}{default}; the masked layernorm must finish ramping within its stage, "
                 f"which is {end - st.at_step} steps: set grow.ramp_steps between 1 and {end - st.at_step - 1}, "
                 f"or give the stage more steps")
        configs.append(stage_cfg)
        origins.append(st.at_step if st.optim else origins[-1])
        prev = stage_cfg
    return StagePlan(configs, origins)


def _asdict_for_stage(cfg: Any) -> dict[str, Any]:
    data = to_dict(cfg)
    data.pop("stage", None)
    data.pop("init", None)
    return data


def _check_growth(g: GrowConfig, m: Any, prev: Any, need: Callable) -> Any:
    if not g.any():
        need(not g.positions, "grow.positions", "is set without grow.n_layer")
        return m
    new = grown_model(m, g)
    head_dim = m.head_dim or m.d_model // m.n_head
    for key, old, value in (("n_layer", m.n_layer, g.n_layer), ("d_model", m.d_model, g.d_model),
                            ("n_head", m.n_head, g.n_head), ("d_ff", prev.d_ff, g.d_ff)):
        need(value == 0 or value >= old, f"grow.{key}",
             f"found {value}, smaller than the model's {old}; growth only adds (0 keeps the size)")
    for spec in (m.block, m.attention, m.ffn, m.shape):  # each kind says whether it can grow
        refusal = spec.grow_refusal()
        need(not refusal, "grow", refusal)
    need(not m.memory.active, "grow", f"a memory's states have the model's width; growth needs [model.memory] "
                                      f"kind = 'none' (found '{m.memory.kind}')")
    need(not prev.aux.enabled(m.n_layer), "grow", "T12 auxiliary heads are tied to layer positions; "
                                                  "turn [aux] off for runs that grow")
    if g.d_model:
        need(g.d_model % head_dim == 0 or g.n_head, "grow.d_model",
             f"found {g.d_model}, not a multiple of the head size {head_dim}; set grow.n_head too")
        need(new.n_head * head_dim <= g.d_model or g.n_head, "grow.n_head", "too many heads")
        need(not m.output_projection, "grow.d_model", "models with an output projection cannot grow d_model")
    if g.n_layer:
        need(m.pos != "learned_per_layer", "grow.n_layer",
             "per-layer position tables cannot grow in depth; use pos = 'learned' or 'rope'")
        added = g.n_layer - m.n_layer
        pos = g.positions
        need(not pos or (len(pos) == added and len(set(pos)) == added and all(0 <= p < g.n_layer for p in pos)),
             "grow.positions", f"found {pos}; give {added} distinct indices between 0 and {g.n_layer - 1} "
                               f"(where the new blocks go in the grown stack), or leave it empty to spread them")
    else:
        need(not g.positions, "grow.positions", "is set without grow.n_layer")
    return new


def _check_lora(lo: LoraConfig, m: Any, prev: Any, need: Callable) -> None:
    if not lo.enabled():
        need(lo.rank == 0, "lora.rank", f"found {lo.rank}, must be >= 0 (0: no adapters)")
        return
    names = lora_target_names(m)
    bad = [t for t in lo.targets if t not in names]
    need(not bad and bool(lo.targets), "lora.targets",
         f"found {bad or lo.targets}: this model's matrices are {', '.join(names) or 'none (kinds mha/dense have them)'}")
    need(lo.alpha > 0, "lora.alpha", f"found {lo.alpha}, must be > 0")
    need(0 <= lo.dropout < 1, "lora.dropout", f"found {lo.dropout}, must be in [0, 1)")
    need(lo.relora_every >= 0 and lo.relora_warmup >= 0, "lora.relora_every", "must be >= 0")
    need(m.block.kind != "ngpt", "lora", "nGPT keeps its matrices on the sphere; adapters would leave it")
    rank_owner = m.attention.rank if any(t in ("qkv", "q", "k", "v", "proj") for t in lo.targets) else 0
    need(rank_owner == 0 and (m.ffn.rank == 0 or not any(t in ("up", "gate", "down") for t in lo.targets)),
         "lora.targets", "low-rank (rank > 0) matrices take no adapters")
