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
LR = _m("train/lr", "lr", ".2e", "optim")  # the learning rate at this step
GRAD_NORM = _m("train/grad_norm", "grad norm", ".3f", "optim")  # the global gradient norm, before clipping
CLIP_FACTOR = _m("train/clip_factor", "clip factor", ".3f", "optim")  # what clipping multiplied the log step's gradients by: min(1, train.grad_clip / grad norm); 1 = not clipped
CLIPPED = _m("train/clipped", "clipped", ".0%", "optim")  # share of the interval's steps whose gradient norm exceeded train.grad_clip
TOKENS_PER_S = _m("train/tokens_per_s", "tokens/s", ",.0f", "speed", HIGHER)  # training throughput over the log interval (all ranks)
STEP_MS = _m("train/step_ms", "step ms", ".1f", "speed", LOWER)  # wall time of one optimizer step
MFU = _m("train/mfu", "MFU", ".2%", "speed", HIGHER)  # model FLOPs utilization against the device's peak (CPU: its measured matmul peak)
TOKENS = _m("train/tokens", "tokens", ",.0f", "speed")  # tokens trained so far
DATA_WAIT = _m("train/data_wait", "data wait", ".1%", "speed", LOWER)  # share of step time waiting for batches
THREADS = _m("train/threads", "threads", "d", "speed")  # CPU runs: the intra-op threads in force at the log step ([train] threads; auto moves it with the machine's load)
CPU_OTHERS = _m("train/cpu_others", "other load", ".1f", "speed")  # CPU runs: what other processes wanted of this run's cores at the last look, in cores
TRAIN_STEP = _m("train/step", "step", "d")  # wandb's x axis
TRAIN_STAGE = _m("train/stage", "stage", "d")  # the [[stage]] the run is in
PARAMS = _m("train/params", "params", ",.0f")  # parameters of the model at this point (growth changes it)
PARAMS_TRAINABLE = _m("train/params_trainable", "trainable", ",.0f")  # parameters the optimizer updates (LoRA, freezing)

# -- train_benchmarks/: the running validation ----------------------------------------
VAL_LOSS = _m("train_benchmarks/loss", "val loss", group="eval", better=LOWER)  # running validation loss on fixed windows, every eval.every steps
VAL_BPB = _m("train_benchmarks/bpb", "val bpb", group="eval", better=LOWER)  # the same in bits per byte of text
FULL_SECONDS = _m("train_benchmarks/full_seconds", "full pass s", ".1f", "speed")  # what a full validation pass took (eval.full_every)

# -- final_benchmarks/: the end of the run --------------------------------------------
FINAL_LOSS = _m("final_benchmarks/loss", "final val loss", group="eval", better=LOWER)  # the final pass over the whole validation split (non-overlapping windows)
FINAL_BPB = _m("final_benchmarks/bpb", "final val bpb", group="eval", better=LOWER)  # the same in bits per byte
FINAL_TOKENS = _m("final_benchmarks/tokens", "val tokens", ",.0f", "eval")  # validation tokens the final pass scored
FINAL_MEMORY_TOKENS = _m("final_benchmarks/memory_tokens", "memory val tokens", ",.0f", "eval")  # tokens the pass with the memory carried over the split scored (a memory kind: Transformer-XL's protocol)
FINAL_SLIDING_TOKENS = _m("final_benchmarks/sliding_tokens", "sliding val tokens", ",.0f", "eval")  # tokens the sliding-window pass scored (eval.stride)
FINAL_TEST_TOKENS = _m("final_benchmarks/test_tokens", "test tokens", ",.0f", "eval")  # test tokens scored at the end (data.test_fraction or test_tokens)
FINAL_TEST_LOSS = _m("final_benchmarks/test_loss", "test loss", group="eval", better=LOWER)  # loss on the test split, scored once at the end
# the conviction head's statistics (final_benchmarks/<head>_<statistic>)
CONVICTION_AUROC = _m("final_benchmarks/conviction_auroc_top1", "conviction AUROC", ".3f", "conviction", HIGHER)  # how well conviction separates right top-1 guesses from wrong ones
CONVICTION_SPEARMAN = _m("final_benchmarks/conviction_spearman_loss", "conviction ρ(loss)", ".3f", "conviction")  # rank correlation of conviction with the token's loss (negative is good)
CONVICTION_MEAN = _m("final_benchmarks/conviction_mean", "conviction mean", ".4f", "conviction")  # the head's mean output over the validation tokens
# every evaluation pass (running, full, sliding, test, test_sliding) in both namespaces
for _ns in (RUNNING_VAL, FINAL):
    _m(f"{_ns}/{{pass}}loss", "loss", ".4f", "eval", LOWER)  # a pass's loss: (running), full_, sliding_, memory_, test_, test_sliding_, test_memory_
    _m(f"{_ns}/{{pass}}bpb", "bpb", ".4f", "eval", LOWER)  # a pass's bits per byte
    _m(f"{_ns}/{{pass}}bpc", "bpc", ".4f", "eval", LOWER)  # byte-level: bits per character
_m("final_benchmarks/{head}_{statistic}", "head statistic", ".4f", "eval")  # a head's own statistic over the final pass

# -- debug/ and aux/ ------------------------------------------------------------------
HIDDEN_NORM = _m("debug/hidden_norm", "hidden norm", ".3f", "debug")  # mean L2 norm of the residual stream after the last block, before the final norm (where its growth shows)
HIDDEN_NORM_NORMED = _m("debug/hidden_norm_normed", "normed hidden", ".3f", "debug")  # the same after the final norm (what the LM head reads; near sqrt(d_model) by design)
LOGIT_NORM = _m("debug/logit_norm", "logit norm", ".3f", "debug")  # log.logit_stats: mean L2 norm of a token's logit vector (after any soft-cap)
LOGIT_MAX = _m("debug/logit_max", "max logit", ".3f", "debug")  # log.logit_stats: the largest logit in the log step's last micro-batch
GRAD_NORM_PREFIX = "debug/grad_norm/"
_m("debug/grad_norm/{module}", "grad norm", ".3f", "debug")  # gradient norm of one module group (embeddings, blocks, lm_head, a head), before clipping: the groups combine (root of the sum of squares) to train/grad_norm
_m("debug/weight_norm/{module}", "weight norm", ".3f", "debug")  # log.weight_norms: L2 norm of one module group's weights after the log step
_m("debug/update_ratio/{module}", "update/weight", ".2e", "debug")  # log.update_ratios: ||W_after - W_before|| / ||W_before|| of one module group over the log step
_m("debug/{loss}_loss", "loss", ".4f", "loss", LOWER)  # each loss the model names, unweighted (ce, conviction, moe_balance, aux, ...)
AUX_ACTIVE_LAYERS = _m("aux/active_layers", "aux layers", ".0f", "debug")  # T12: intermediate layers whose loss is still on
_m("aux/layer{layer}_t{offset}_loss", "aux loss", ".4f", "loss", LOWER)  # T12: layer l's loss for the target offset positions ahead
_m("aux/final_t{offset}_loss", "aux loss", ".4f", "loss", LOWER)  # T12: the final layer's extra target's loss
_m("debug/{statistic}", "statistic", ".4g", "debug")  # a kind's own (MoE balance, attention entropy...): last

# the columns of compare's table of final figures, in order
FINAL_COLUMNS = (FINAL_LOSS, FINAL_BPB, FINAL_TEST_LOSS, CONVICTION_AUROC, CONVICTION_SPEARMAN, CONVICTION_MEAN)
FINAL_COUNTS = (FINAL_TOKENS, FINAL_SLIDING_TOKENS, FINAL_MEMORY_TOKENS, FINAL_TEST_TOKENS)  # how much a pass scored, not a result


def final_figures(names) -> list[str]:
    """The final results among logged names, for every view that shows a run's outcome (the
    headless summary, compare, the Queue tab, findings): the usual columns first, in their order,
    then every other final_benchmarks/ name a run has (sliding, full pass, test sliding, bpc, a
    head's statistics, IVON's posterior-predictive loss ...), sorted; the token counts stay out."""
    names = set(names)
    rest = sorted(n for n in names if n.startswith(FINAL + "/") and n not in FINAL_COLUMNS and n not in FINAL_COUNTS
                  and not n.endswith("_tokens"))
    return [n for n in FINAL_COLUMNS if n in names] + rest


def shared_cpu(latest: dict, cores: int | None) -> tuple[float, int] | None:
    """(other processes' demand, this run's threads) when they add up to more than the run's
    cores (the machine is shared, and that is why the run is slower), else None."""
    others, threads = latest.get(CPU_OTHERS), latest.get(THREADS)
    if others is None or threads is None or not cores or others + threads <= cores + 0.25:
        return None
    return others, int(threads)


def busy_note(latest: dict, cores: int | None) -> str:
    """The headless line's words for a shared machine ('' when it is not): 'shared: 2.0 cores
    wanted by others of 2, 1 thread'."""
    shared = shared_cpu(latest, cores)
    if shared is None:
        return ""
    others, threads = shared
    return f"shared: {others:.1f} cores wanted by others of {cores}, {threads} thread{'s' if threads != 1 else ''}"


def label_of(name: str) -> str:
    """A name's label for a table row: its own, or for a family member its own words (a final
    pass's 'sliding_loss' reads 'final sliding loss', not its family's 'loss')."""
    if name in REGISTRY:
        return REGISTRY[name].label
    ns, _, leaf = name.partition("/")
    words = leaf.replace("/", " ").replace("_", " ")
    return {FINAL: f"final {words}", RUNNING_VAL: f"val {words}"}.get(ns, words)


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


def weight_norm(module: str) -> str:
    """The weight norm of one module group (log.weight_norms)."""
    return f"{DEBUG}/weight_norm/{module}"


def update_ratio(module: str) -> str:
    """How far one step moved a module group, relative to its size (log.update_ratios)."""
    return f"{DEBUG}/update_ratio/{module}"


def aux_layer_loss(layer: int, offset: int) -> str:
    return f"{AUX}/layer{layer}_t{offset}_loss"


def aux_final_loss(offset: int) -> str:
    return f"{AUX}/final_t{offset}_loss"
