"""A run at a glance, one read model for every face: ``cockpit status``, the Queue tab, sweep
status, compare and the scaling points all show a run through ``RunSummary``, so its step,
total, losses, tokens, speed and ETA have one set of fallbacks (state.json, the events, the
config) instead of one per face. Torch-free, read from files only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cockpit.history import RunHistory, eta_s
from runspec.config.schema import ConfigError
from runspec.config.shape import model_label
from runspec.run.metrics import FINAL_LOSS, TOKENS_PER_S, TRAIN_LOSS, final_figures, info, label_of
from runspec.run.rundir import RUNNING

if TYPE_CHECKING:
    from cockpit.runs import Listed
    from runspec.config.schema import RunConfig


@dataclass
class RunSummary:
    id: str
    status: str
    step: int = 0
    max_steps: int = 0
    loss: float | None = None  # the latest training loss (None before the first step event)
    val_loss: float | None = None  # the final pass's validation loss, else the latest running one
    bpb: float | None = None
    final: bool = False  # val_loss/bpb are the final pass's
    final_loss: float | None = None  # the final pass's alone (what a fit may use)
    tokens: int | None = None  # tokens trained
    tok_s: float | None = None  # the latest throughput
    median_tok_s: float | None = None  # over the run
    wall_s: float = 0.0  # engine time over every launch
    eta_s: float | None = None  # a running run's time left
    stage: int = 0
    stages: int = 0
    phase: str = ""  # 'k/n' of its phases (its own shape, then each [[stage]]); '' without stages
    params: int | None = None
    params_non_embedding: int | None = None  # (runs from before it was logged: None)
    flops_per_token: float | None = None  # (likewise)
    model: str = "?"  # '4L×128 mla+moe4x2'
    reason: str = ""
    updated: float = 0.0  # the newest state transition
    has_events: bool = False
    figures: list[str] | None = None  # 'label value' of every final figure it has (final_items)


def final_items(final: dict[str, float]) -> list[str]:
    """'label value' for every final figure of a run, in the registry's order (val loss, bpb,
    test loss, conviction AUROC ... then sliding, full pass, bpc, a head's statistics)."""
    return [f"{label_of(k)} {info(k).format(final[k])}" for k in final_figures(final)]


_stage_labels: dict[int, tuple[object, list[str]]] = {}


def stage_labels(cfg) -> list[str]:
    """Each phase's shape label, '2L×64' then '4L×128'; planned once per config object
    (run_config hands out the same object until resolved.toml changes)."""
    hit = _stage_labels.get(id(cfg))
    if hit is None or hit[0] is not cfg:
        from runspec.config.plan import stage_plan

        try:
            labels = [model_label(c.model) for c in stage_plan(cfg).configs]
        except ConfigError:
            labels = []
        hit = _stage_labels[id(cfg)] = (cfg, labels)
    return hit[1]


def summarize(listed: "Listed", cfg: "RunConfig | None" = None, history: RunHistory | None = None) -> RunSummary:
    """The summary of one listed run (``read_states``); ``cfg`` and ``history`` when the caller
    already has them (the Queue tab keeps one history per run and polls it)."""
    rd, state = listed.rd, listed.state
    if cfg is None:
        from cockpit.runs import run_config

        cfg = run_config(rd)
    s = RunSummary(rd.id, listed.status, model=model_label(cfg.model) if cfg is not None else "?")
    if state is not None:
        s.step, s.max_steps, s.reason, s.updated = state.step, state.max_steps, state.reason, state.updated
    s.max_steps = s.max_steps or (cfg.train.max_steps if cfg is not None else 0)
    if history is None and rd.events.exists():
        history = RunHistory(rd)
    if history is None:
        return s
    h = history
    h.poll()
    s.has_events = h.events > 0
    s.step = max(s.step, h.step)
    s.max_steps = h.max_steps or s.max_steps
    s.loss = h.latest.get(TRAIN_LOSS)
    s.val_loss, s.bpb, s.final, s.final_loss = h.val_loss, h.val_bpb, FINAL_LOSS in h.final, h.final.get(FINAL_LOSS)
    s.figures = final_items(h.final) if h.final else None
    s.tokens, s.tok_s, s.median_tok_s = h.tokens, h.latest.get(TOKENS_PER_S), h.median_tokens_per_s()
    s.wall_s, s.stage, s.stages, s.phase = h.wall_s, h.stage, h.stages, h.phase
    start = h.start
    s.params = int(start["params"]) if start.get("params") else None
    if h.stage and cfg is not None and cfg.stage:  # the shape now, not the one it started with
        labels = stage_labels(cfg)
        if labels:
            s.model = labels[min(h.stage, len(labels) - 1)]
        s.params = h.stage_params or s.params
    s.params_non_embedding = int(start["params_non_embedding"]) if start.get("params_non_embedding") else None
    s.flops_per_token = float(start["flops_per_token"]) if start.get("flops_per_token") else None
    if listed.status == RUNNING:
        s.eta_s = eta_s(s.step, s.max_steps, h.latest)
    return s
