"""The metric vocabulary: every name the engine logs (events.jsonl and wandb alike), with its
label, format, group and which direction is better. The engine, the TUI, ``compare``, findings
and the headless output all take names from here; a name spelled anywhere else is a bug
(tools/check_structure.py looks).

Names live in namespaces: ``train/`` (every log interval), ``train_benchmarks/`` (the running
validation), ``final_benchmarks/`` (the end-of-run passes), ``debug/`` (diagnostics: per-module
gradient norms, named losses, a model's own statistics) and ``aux/`` (T12's per-layer losses).
Families are names with a part that varies (``debug/grad_norm/<module>``, ``debug/<loss>_loss``,
``final_benchmarks/<head>_<statistic>``): ``info`` finds a name's entry, exact or by family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TRAIN, RUNNING_VAL, FINAL, DEBUG, AUX = "train", "train_benchmarks", "final_benchmarks", "debug", "aux"
NAMESPACES = (TRAIN, RUNNING_VAL, FINAL, DEBUG, AUX)

LOWER, HIGHER, NEITHER = "lower", "higher", ""


@dataclass(frozen=True)
class Metric:
    name: str  # the logged name, or a family's pattern with {parts}
    label: str  # short, for tables and charts
    fmt: str = ".4f"
    group: str = ""  # loss, speed, optim, eval, conviction, debug
    better: str = NEITHER

    def format(self, value: float | None) -> str:
        from math import isfinite

        if value is None or (isinstance(value, float) and not isfinite(value)):
            return "-"
        return format(value, self.fmt)


REGISTRY: dict[str, Metric] = {}
_FAMILIES: list[tuple[re.Pattern, Metric]] = []


def register(metric: Metric) -> str:
    """Add a name (or a family, when it has {parts}) to the vocabulary; returns the name."""
    if "{" in metric.name:
        pattern = re.sub(r"\\\{\w+\\\}", r"(.*)", re.escape(metric.name))
        _FAMILIES.append((re.compile(f"^{pattern}$"), metric))
    REGISTRY[metric.name] = metric
    return metric.name


def registered(name: str) -> bool:
    """Whether a logged name is in the vocabulary (its own entry or a family's)."""
    return name in REGISTRY or any(pattern.match(name) for pattern, _ in _FAMILIES)


def info(name: str) -> Metric:
    """The entry of a logged name: its own, its family's, or a plain one named after it."""
    if name in REGISTRY:
        return REGISTRY[name]
    for pattern, metric in _FAMILIES:
        if pattern.match(name):
            return Metric(name, name.rsplit("/", 1)[-1], metric.fmt, metric.group, metric.better)
    return Metric(name, name.rsplit("/", 1)[-1], ".4g")


def _m(name: str, label: str, fmt: str = ".4f", group: str = "", better: str = NEITHER) -> str:
    return register(Metric(name, label, fmt, group, better))


# -- train/: every log interval -------------------------------------------------------
TRAIN_LOSS = _m("train/loss", "train loss", group="loss", better=LOWER)  # the LM loss, comparable with validation
OBJECTIVE = _m("train/objective", "objective", group="loss", better=LOWER)  # what was minimised (LM + heads)
LR = _m("train/lr", "lr", ".2e", "optim")
GRAD_NORM = _m("train/grad_norm", "grad norm", ".3f", "optim")
TOKENS_PER_S = _m("train/tokens_per_s", "tokens/s", ",.0f", "speed", HIGHER)
STEP_MS = _m("train/step_ms", "step ms", ".1f", "speed", LOWER)
MFU = _m("train/mfu", "MFU", ".2%", "speed", HIGHER)
TOKENS = _m("train/tokens", "tokens", ",.0f", "speed")
DATA_WAIT = _m("train/data_wait", "data wait", ".1%", "speed", LOWER)  # share of step time waiting for batches
TRAIN_STEP = _m("train/step", "step", "d")  # wandb's x axis
TRAIN_STAGE = _m("train/stage", "stage", "d")
PARAMS = _m("train/params", "params", ",.0f")
PARAMS_TRAINABLE = _m("train/params_trainable", "trainable", ",.0f")

# -- train_benchmarks/: the running validation ----------------------------------------
VAL_LOSS = _m("train_benchmarks/loss", "val loss", group="eval", better=LOWER)
VAL_BPB = _m("train_benchmarks/bpb", "val bpb", group="eval", better=LOWER)
FULL_SECONDS = _m("train_benchmarks/full_seconds", "full pass s", ".1f", "speed")

# -- final_benchmarks/: the end of the run --------------------------------------------
FINAL_LOSS = _m("final_benchmarks/loss", "final val loss", group="eval", better=LOWER)
FINAL_BPB = _m("final_benchmarks/bpb", "final val bpb", group="eval", better=LOWER)
FINAL_TOKENS = _m("final_benchmarks/tokens", "val tokens", ",.0f", "eval")
FINAL_SLIDING_TOKENS = _m("final_benchmarks/sliding_tokens", "sliding val tokens", ",.0f", "eval")
FINAL_TEST_TOKENS = _m("final_benchmarks/test_tokens", "test tokens", ",.0f", "eval")
FINAL_TEST_LOSS = _m("final_benchmarks/test_loss", "test loss", group="eval", better=LOWER)
# the conviction head's statistics (final_benchmarks/<head>_<statistic>)
CONVICTION_AUROC = _m("final_benchmarks/conviction_auroc_top1", "conviction AUROC", ".3f", "conviction", HIGHER)
CONVICTION_SPEARMAN = _m("final_benchmarks/conviction_spearman_loss", "conviction ρ(loss)", ".3f", "conviction")
CONVICTION_MEAN = _m("final_benchmarks/conviction_mean", "conviction mean", ".4f", "conviction")
# every evaluation pass (running, full, sliding, test, test_sliding) in both namespaces
for _ns in (RUNNING_VAL, FINAL):
    _m(f"{_ns}/{{pass}}loss", "loss", ".4f", "eval", LOWER)
    _m(f"{_ns}/{{pass}}bpb", "bpb", ".4f", "eval", LOWER)
    _m(f"{_ns}/{{pass}}bpc", "bpc", ".4f", "eval", LOWER)  # byte-level: bits per character
_m("final_benchmarks/{head}_{statistic}", "head statistic", ".4f", "eval")

# -- debug/ and aux/ ------------------------------------------------------------------
HIDDEN_NORM = _m("debug/hidden_norm", "hidden norm", ".3f", "debug")
GRAD_NORM_PREFIX = "debug/grad_norm/"
_m("debug/grad_norm/{module}", "grad norm", ".3f", "debug")
_m("debug/{loss}_loss", "loss", ".4f", "loss", LOWER)
AUX_ACTIVE_LAYERS = _m("aux/active_layers", "aux layers", ".0f", "debug")
_m("aux/layer{layer}_t{offset}_loss", "aux loss", ".4f", "loss", LOWER)
_m("aux/final_t{offset}_loss", "aux loss", ".4f", "loss", LOWER)
_m("debug/{statistic}", "statistic", ".4g", "debug")  # a kind's own (MoE balance, attention entropy...): last

# the columns of compare's table of final figures, in order
FINAL_COLUMNS = (FINAL_LOSS, FINAL_BPB, FINAL_TEST_LOSS, CONVICTION_AUROC, CONVICTION_SPEARMAN, CONVICTION_MEAN)


def named(namespace: str, key: str) -> str:
    """A name in a namespace: an evaluation's figures (``final_benchmarks/test_loss``...)."""
    return f"{namespace}/{key}"


def debug(key: str) -> str:
    """A model's own statistic under debug/ (an attention kind's entropy, MoE's balance...)."""
    return f"{DEBUG}/{key}"


def debug_loss(loss: str) -> str:
    """A named loss (conviction, aux, z-loss...) besides the LM loss."""
    return f"{DEBUG}/{loss}_loss"


def is_named_loss(name: str) -> bool:
    """debug/<loss>_loss for a loss a model named, except the LM loss itself (debug/ce_loss)."""
    inner = name[len(DEBUG) + 1:]
    return name.startswith(DEBUG + "/") and inner.endswith("_loss") and inner != "ce_loss"


def grad_norm(module: str) -> str:
    """The gradient norm of one module group (debug/grad_norm/blocks, .../head ...)."""
    return f"{GRAD_NORM_PREFIX}{module}"


def aux_layer_loss(layer: int, offset: int) -> str:
    return f"{AUX}/layer{layer}_t{offset}_loss"


def aux_final_loss(offset: int) -> str:
    return f"{AUX}/final_t{offset}_loss"
