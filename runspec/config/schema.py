"""Run configuration: one TOML file, checked strictly, resolved with every default filled in.

Torch-free on purpose: the cockpit validates configs (queue add, headless run) without
loading torch. Every section is a dataclass; the loader walks the dataclass fields, so adding
a knob is adding a field (with its type, default and, where it has a fixed set of values,
``choices`` metadata).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import sys
import typing
from dataclasses import dataclass, field
from typing import Any

from runspec.config.stages import InitConfig, StageConfig
from zoo.attention.mha.spec import MHASpec
from zoo.attention.spec import AttentionSpec
from zoo.block.prenorm.spec import PreNormSpec
from zoo.block.spec import BlockSpec
from zoo.ffn.dense.spec import DenseSpec
from zoo.ffn.spec import FFNSpec
from zoo.memory.none.spec import NoMemorySpec
from zoo.memory.spec import MemorySpec
from zoo.registry import DEFAULT_KIND, FAMILIES, kind_of_key, spec_keys
from zoo.shape.spec import ShapeSpec
from zoo.shape.stack.spec import StackSpec

# tomllib is imported from here by the modules that read TOML (one place for the 3.10 fallback)
if sys.version_info >= (3, 11):
    import tomllib  # noqa: F401
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # noqa: F401

BUILTIN_STORIES = "builtin:stories"
MAX_STEPS = 1_000_000_000  # beyond any run on one machine; a larger value is a typo


class ConfigError(ValueError):
    """A config problem, rendered as one line naming the file, the key and what to do."""

    def __init__(self, source: str, key: str, message: str):
        self.source = source
        self.key = key
        super().__init__(f"{source}: {key}: {message}")


def _choices(*values: str, doc: str = "") -> Any:
    return {"choices": values, "doc": doc}


def _family(name: str, default: Any) -> Any:
    return field(default_factory=default, metadata={"family": name})


@dataclass
class ModelConfig:
    n_layer: int = 4  # transformer blocks
    d_model: int = 128  # width of the residual stream
    n_head: int = 4  # the attention geometry every kind reads (diff/dint pair heads: n_head / 2 of them)
    head_dim: int = 0  # 0: d_model // n_head; any other value decouples head size from width
    block_size: int = 128  # context length in tokens
    bias: bool = True  # biases in linear layers and LayerNorms (the LM head never has one)
    norm: str = field(default="layernorm", metadata=_choices("layernorm", "rmsnorm"))  # the normalization layers
    qk_norm: bool = False  # normalize queries and keys per head before RoPE (QK-norm)
    pos: str = field(default="learned", metadata=_choices("learned", "learned_per_layer", "rope", "xl_relative", "none"))  # positions: one learned table, one per layer (T12), rotary, Transformer-XL's relative encoding (mha, gqa), or none
    rope_base: float = 10000.0  # RoPE's base frequency
    dropout: float = 0.0  # on attention weights, residual branches and embeddings
    logit_softcap: float = 0.0  # 0 disables; else logits = c * tanh(logits / c)
    output: str = field(default="softmax", metadata=_choices("softmax", "stablemax"))  # the next-token distribution
    init: str = field(default="scaled", metadata=_choices("scaled", "zero_out", "normal"))  # residual-writing matrices: std/sqrt(2L) (GPT-2), zeros (each block starts as the identity), or plain
    init_std: float = 0.02  # std of the normal init of matrices and embeddings
    residual_scale: float = 1.0  # x + residual_scale * branch(x)
    tie_embeddings: bool = True  # the LM head is the token embedding
    output_projection: bool = False  # d x d linear between the last hidden state and the LM head
    output_projection_norm: bool = False  # a norm after the output projection
    parametrization: str = field(default="sp", metadata=_choices("sp", "mup"))  # sp: the usual; mup: the maximal-update parametrization (init, learning rates and the readout scaled with width, so a learning rate found at base_width transfers)
    base_width: int = 0  # mup: the width whose learning rate and init the others inherit; 0: d_model (a multiplier of 1); sp has no use for it (so one sweep can compare both)
    # the kinds: a table with `kind` and that kind's keys, or just the kind's name
    attention: AttentionSpec = _family("attention", MHASpec)
    ffn: FFNSpec = _family("ffn", DenseSpec)
    block: BlockSpec = _family("block", PreNormSpec)
    memory: MemorySpec = _family("memory", NoMemorySpec)  # none, xl (segment recurrence), compressive
    shape: ShapeSpec = _family("shape", StackSpec)  # stack (every layer at full length), hourglass


@dataclass
class DataConfig:
    path: str = BUILTIN_STORIES  # .txt, .jsonl, .parquet, a directory of parquet files, or builtin:stories
    tokenizer: str = "bytes"  # bytes, or any tiktoken encoding (gpt2, cl100k_base, ...)
    text_column: str = "text"  # the field holding the text in .jsonl and parquet files
    val_fraction: float = 0.1  # the tail of the token stream is held out for validation
    test_fraction: float = 0.0  # contiguous train | val | test: the test split is the last part
    val_tokens: int = 0  # a size instead of a fraction (enwik8: 5_000_000); 0: val_fraction
    test_tokens: int = 0  # the test split's size (enwik8: 5_000_000); 0: test_fraction
    raw_bytes: bool = False  # bytes tokenizer: the files' raw bytes, no UTF-8 decoding, no separators (enwik8)


@dataclass
class TrainConfig:
    max_steps: int = 1000  # optimizer steps of the run (resume --max-steps raises it)
    max_time: str = ""  # "h:mm" (or "h:mm:ss") budget per invocation; "" means no time limit
    batch_size: int = 16  # sequences per step and rank (before grad_accum)
    grad_accum: int = 1  # micro-batches accumulated per optimizer step
    grad_clip: float = 1.0  # 0 disables clipping
    precision: str = field(default="fp32", metadata=_choices("fp32", "bf16", "fp16"))  # bf16/fp16: autocast (fp16 with a grad scaler); fp32 weights always
    device: str = "auto"  # auto: cuda, then mps, then cpu
    compile: str = field(default="auto", metadata=_choices("auto", "true", "false"))  # torch.compile the model; auto: where the run is long enough for compiling to pay (true/false also as TOML booleans)
    seed: int = 1337  # model init, data order and sampling
    checkpoint_every: int = 250  # 0: only at the end and on a stop signal
    peak_tflops: float = 0.0  # 0: known GPU table, or a measured matmul peak on CPU
    # ranks on this machine (torchrun; NCCL on CUDA, gloo on the CPU); batch_size is per rank
    gpus: int = 1  # ranks (devices) the run takes; > 1 launches torchrun
    nodes: int = 1  # machines the run spans, `gpus` ranks on each (torchrun's static rendezvous at `rdzv`)
    rdzv: str = ""  # HOST:PORT on node 0 where the nodes meet; may instead be given at launch (--rdzv)
    slots: int = 1  # worker slots it takes on each device (cockpit worker --slots N); N: the device alone
    fsdp: bool = False  # shard parameters, gradients and optimizer state (FSDP2) instead of DDP
    prefetch: int = 2  # steps of batches built ahead in a background thread; 0: built in the step
    threads: int = 0  # CPU intra-op threads; 0: from the free cores, adapting while other jobs come and go


@dataclass
class OptimConfig:
    name: str = field(default="adamw", metadata=_choices("adamw", "muon", "ivon"))  # AdamW, Muon (matrices; AdamW for the rest) or IVON
    lr: float = 1e-3  # peak learning rate (AdamW's, IVON's)
    min_lr: float = 1e-4  # the schedule's floor
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])  # AdamW's (beta1, beta2)
    eps: float = 1e-8  # AdamW's epsilon
    weight_decay: float = 0.1  # decoupled, on matrices and embeddings only
    schedule: str = field(default="cosine", metadata=_choices("cosine", "linear", "constant", "wsd"))  # learning-rate schedule after warmup (wsd: warmup, stable, decay)
    warmup_steps: int = 100  # linear warmup from 0
    decay_steps: int = 0  # 0: decay over max_steps
    wsd_decay_fraction: float = 0.2  # share of decay_steps spent in the final decay of WSD
    wte_lr_scale: float = 1.0  # learning-rate multiplier for the token embedding
    muon_lr: float = 0.02  # Muon's learning rate for the matrices
    muon_momentum: float = 0.95  # Muon's Nesterov momentum
    orthograd: bool = False  # ⊥Grad: step on the gradient's part orthogonal to the weight, rescaled to its norm
    # IVON (Shen et al. 2024, the ivon-opt package): a variational posterior over the weights
    ivon_ess: float = 0.0  # effective sample size; 0: the number of training tokens
    ivon_hess_init: float = 0.1  # IVON's initial Hessian estimate
    ivon_beta2: float = 0.99999  # IVON's Hessian averaging
    ivon_weight_decay: float = 1e-6  # IVON's prior precision (it plays weight decay's part)
    ivon_mc_samples: int = 1  # posterior samples (forward and backward passes) per step


@dataclass
class EvalConfig:
    every: int = 250  # running validation every N steps; 0 disables
    batches: int = 8  # batches per running validation
    at_start: str = field(default="auto", metadata=_choices("auto", "always", "never"))  # a running validation at step 0, before any training: auto does it for [init] from runs (what the parent scores on this data)
    final: bool = True  # one full pass over the validation split at the end
    final_max_batches: int = 0  # 0: the whole split
    sample_tokens: int = 200  # generated at each evaluation; 0 disables samples
    sample_prompt: str = ""  # the prompt of the samples ('' : the separator token)
    temperature: float = 0.8  # sampling temperature of the samples
    top_k: int = 50  # top-k of the samples
    posterior_samples: int = 0  # IVON: also score the final pass with probabilities averaged over this many weight samples
    full_every: int = 0  # a full pass over the validation split every N steps (train_benchmarks/full_*); 0: never
    stride: int = 0  # full passes also score sliding windows: each token with >= block_size - stride context; 0: off


@dataclass
class LogConfig:
    every: int = 10  # steps between train/* logs (and the TUI's points)
    wandb: bool = True  # log to wandb too (events.jsonl always)
    wandb_mode: str = field(default="offline", metadata=_choices("offline", "online", "disabled"))  # offline writes into the run directory (wandb sync uploads later)
    wandb_project: str = "cockpit"  # the wandb project name
    grad_norms: bool = True  # per-module gradient norms at each log step, before clipping
    weight_norms: bool = False  # per-module weight norms at each log step
    update_ratios: bool = False  # per-module ||update|| / ||weight|| at each log step (copies the weights on log steps)
    logit_stats: bool = False  # mean logit-vector norm and the max logit at each log step
    tensorboard: bool = False  # also write TensorBoard event files into the run's tensorboard/ (pip install 'cockpit[tensorboard]')


@dataclass
class ConvictionConfig:
    """A scalar head predicting how well the final hidden state matches the true next token's
    LM-head row. weight 0.01: cosine targets lie in [-1, 1], so the MSE term stays two to three
    orders of magnitude below the cross-entropy (2-5 nats early on) and does not steer the
    language model, while its gradient still trains the head within a few hundred steps.
    For "dot" and "l2", whose targets are ~10x larger, consider 0.001."""

    enabled: bool = False  # add the conviction head
    target: str = field(default="cosine", metadata=_choices("cosine", "dot", "l2"))  # what the head regresses: cosine, dot product or L2 distance of h_t and e_y
    weight: float = 0.01  # weight of its MSE in the objective
    train_lm_head: bool = False  # let the loss reach the LM head / embeddings through the target
    detach_input: bool = False  # train only the head: the trunk gets no gradient from this loss


@dataclass
class AuxConfig:
    """T12 auxiliary losses (Al-Rfou et al. 2018), for training only: evaluation and generation
    use the final layer's next-token prediction alone. Intermediate layers get their own
    classifier (through their own norm); ``targets`` extra classifiers predict t+2 .. t+1+k at
    the final layer and at every intermediate layer that still has a loss."""

    intermediate: bool = False  # every layer 1 .. n_layer-1 gets a next-token loss
    layers: list[int] = field(default_factory=list)  # or just these (1-indexed, < n_layer)
    schedule: str = field(default="t12", metadata=_choices("t12", "constant"))  # t12: layer l of n stops after l/(2n) of training
    layer_weight: float = 1.0  # weight of each intermediate next-token loss
    targets: int = 0  # extra targets: t+2 .. t+1+targets (the paper: 1)
    target_weight: float = 0.5  # the paper's multiplier for the extra targets

    def chosen_layers(self, n_layer: int) -> list[int]:
        return sorted(set(self.layers)) if self.layers else (list(range(1, n_layer)) if self.intermediate else [])

    def enabled(self, n_layer: int) -> bool:
        return bool(self.chosen_layers(n_layer)) or self.targets > 0


@dataclass
class ServeConfig:
    """How ``cockpit serve`` turns a chat (``/v1/chat/completions``) into a prompt for a base
    model: each message after its role's prefix, messages joined by the separator, and the
    reply generated after the assistant's prefix. The reply ends where the model starts a new
    user or system turn (the separator and that prefix are stop strings)."""

    chat_system: str = "System: "  # before a system message
    chat_user: str = "User: "  # before a user message
    chat_assistant: str = "Assistant: "  # before an assistant message, and (without its trailing space) the reply
    chat_separator: str = "\n"  # between messages


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    conviction: ConvictionConfig = field(default_factory=ConvictionConfig)
    aux: AuxConfig = field(default_factory=AuxConfig)
    init: InitConfig = field(default_factory=InitConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    stage: list[StageConfig] = field(default_factory=list)  # [[stage]] entries, in order of at_step

    # -- derived values, computed in one place so engine and cockpit agree -------------
    @property
    def head_dim(self) -> int:
        return self.model.head_dim or self.model.d_model // self.model.n_head

    @property
    def d_ff(self) -> int:
        return self.model.ffn.width(self.model)

    @property
    def decay_steps(self) -> int:
        return self.optim.decay_steps or self.train.max_steps

    @property
    def tokens_per_rank(self) -> int:
        return self.train.batch_size * self.train.grad_accum * self.model.block_size

    @property
    def tokens_per_step(self) -> int:
        """Global, for ``gpus`` ranks on each of ``nodes``: batch_size and grad_accum are per rank."""
        return self.tokens_per_rank * self.train.gpus * self.train.nodes


SECTIONS: dict[str, type] = {f.name: f.type for f in dataclasses.fields(RunConfig)}  # type: ignore[misc]
_SECTION_TYPES = typing.get_type_hints(RunConfig)


def parse_endpoint(text: str) -> tuple[str, int]:
    """'HOST:PORT' (a rendezvous endpoint) as (host, port); a ValueError that says what is wrong."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"found {text!r}, expected HOST:PORT of node 0 (e.g. 'node001:29500', a port 1-65535)")
    return host.strip("[]"), int(port)


def node_problem(nodes: int, node: int, rdzv: str) -> str:
    """Why node ``node`` cannot take part in a run across ``nodes`` machines meeting at ``rdzv``
    ('' when it can): the one check the CLI (before a run exists) and the engine (at launch) share."""
    if nodes == 1:
        return (f"--node-rank {node}: this run is on one machine; pass --nodes N (N > {node}) on every node"
                if node else "")
    if node >= nodes:
        return f"--node-rank {node}: node ranks run 0..{nodes - 1} for --nodes {nodes}"
    if not rdzv:
        return (f"[train] nodes = {nodes} needs --rdzv HOST:PORT (node 0's address as the other nodes reach it, "
                f"and a free port) or [train] rdzv")
    try:
        parse_endpoint(rdzv)
    except ValueError as e:
        return f"--rdzv: {e}"
    return ""


def parse_time_budget(text: str) -> float:
    """'1:30' -> 5400 seconds, '0:00:30' -> 30; '' -> 0, meaning no budget."""
    if text == "":
        return 0.0
    m = re.fullmatch(r"(\d+):([0-5]\d)(?::([0-5]\d))?", text.strip())
    if not m:
        raise ValueError(f"'{text}' is not a time budget; write h:mm (or h:mm:ss), e.g. '1:30' or '0:05'")
    seconds = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3) or 0)
    if seconds == 0:
        raise ValueError(f"'{text}' is a zero budget; leave max_time empty for no time limit")
    return float(seconds)


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, "a list of numbers"
    )


def _coerce(value: Any, tp: Any, where: str, source: str) -> Any:
    found = f"{value!r} ({type(value).__name__})"
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(source, where, f"found {value}, expected a finite number")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif typing.get_origin(tp) is list and typing.get_args(tp) == (str,):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ConfigError(source, where, f"found {found}, expected a list of strings, e.g. [\"qkv\", \"proj\"]")
    elif typing.get_origin(tp) is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(source, where, f"found {found}, expected a table")
    elif typing.get_origin(tp) is list and typing.get_args(tp) == (int,):
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value)
        raise ConfigError(source, where, f"found {found}, expected a list of whole numbers, e.g. [1, 2, 3]")
    elif typing.get_origin(tp) is list:
        if isinstance(value, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            return [float(v) for v in value]
    raise ConfigError(source, where, f"found {found}, expected {_type_name(tp)}")


def _unknown_key(source: str, where: str, key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(known)}"
    return ConfigError(source, where, f"unknown key; {hint}")


def _build_section(cls: type, table: Any, section: str, source: str) -> Any:
    """A dataclass from a TOML table, every key checked; nested dataclass fields are tables of
    their own, and fields of a kind family dispatch on their ``kind``."""
    if not isinstance(table, dict):
        raise ConfigError(source, f"[{section}]", f"found {table!r}, expected a table")
    hints = typing.get_type_hints(cls)
    fields = {f.metadata.get("key", f.name): f for f in dataclasses.fields(cls)}  # [init] from is field from_
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        where = f"[{section}] {key}"
        if key not in fields:
            if cls is ModelConfig and (hint := _kind_key_hint(key, own=list(fields))):
                raise ConfigError(source, where, f"unknown key; {hint}")
            raise _unknown_key(source, where, key, list(fields))
        family = fields[key].metadata.get("family")
        if family:
            kwargs[key] = _build_kind(family, value, f"{section}.{key}", source)
            continue
        if dataclasses.is_dataclass(hints.get(key)):
            kwargs[key] = _build_section(hints[key], value, f"{section}.{key}", source)
            continue
        name = fields[key].name
        choices = fields[key].metadata.get("choices")
        if isinstance(value, bool) and choices and "true" in choices:  # compile = true, or "auto"
            value = "true" if value else "false"
        value = _coerce(value, hints[name], where, source)
        if choices and value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                source, where, f"found '{value}', allowed: {', '.join(choices)}{hint}"
            )
        kwargs[name] = value
    return cls(**kwargs)


def _build_kind(family: str, value: Any, section: str, source: str) -> Any:
    """``[model.attention] kind = "mla"`` plus that kind's keys, or just ``attention = "mla"``."""
    kinds = FAMILIES[family]
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, dict):
        raise ConfigError(source, f"[{section}]", f"found {value!r}, expected a table with kind = one of "
                                                  f"{', '.join(kinds)}, or just the kind's name")
    kind = value.get("kind", DEFAULT_KIND[family])
    if kind not in kinds:
        close = difflib.get_close_matches(str(kind), list(kinds), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(source, f"[{section}] kind", f"found '{kind}', allowed: {', '.join(kinds)}{hint}")
    cls = kinds[kind]
    for key in value:
        if key not in spec_keys(cls) and (owners := kind_of_key(family, key)):
            raise ConfigError(source, f"[{section}] {key}", f"not a key of kind '{kind}'; it belongs to "
                                                            f"{' and '.join(repr(k) for k in owners)} (set kind)")
        if key not in spec_keys(cls) and not kind_of_key(family, key) and (hint := _kind_key_hint(key, family)):
            raise ConfigError(source, f"[{section}] {key}", f"unknown key; {hint}")
    return _build_section(cls, value, section, source)


def _kind_key_hint(key: str, exclude: str = "", own: list[str] | None = None) -> str:
    """Where a key given in [model] (or in another kind's table) lives: [model.ffn] activation.
    Empty when one of the section's own keys (``own``) is at least as close: [model] n_layers
    is n_layer, not [model.shape] layers."""
    for family, kinds in FAMILIES.items():
        if family == exclude:
            continue
        names = sorted({k for cls in kinds.values() for k in spec_keys(cls)} - {"kind"})
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
        if close:
            ratio = difflib.SequenceMatcher(None, key, close[0]).ratio()
            if any(difflib.SequenceMatcher(None, key, k).ratio() >= ratio for k in own or []):
                return ""
            owners = kind_of_key(family, close[0])
            kind = "" if len(owners) == len(kinds) else f" (kind {' or '.join(repr(o) for o in owners)})"
            return f"did you mean [model.{family}] {close[0]}{kind}?"
    return ""


# Keys that moved when attention and feed-forward became kinds: [model] activation is now
# [model.ffn] activation. Configs and resolved.toml files written before still load.
MOVED_KEYS = {"activation": "ffn", "gated": "ffn", "d_ff": "ffn", "mlp_ratio": "ffn"}


def migrate(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Old-style keys to their new place, in place (a key given in both places is an error)."""
    model = data.get("model")
    if not isinstance(model, dict):
        return data
    for key, family in MOVED_KEYS.items():
        if key not in model:
            continue
        table = model.get(family, {})
        if isinstance(table, str):
            table = {"kind": table}
        if not isinstance(table, dict):
            continue  # reported when the table is built
        if key in table:
            raise ConfigError(source, f"[model] {key}", f"also given as [model.{family}] {key}; keep the "
                                                        f"[model.{family}] one ([model] {key} is the old place)")
        table[key] = model.pop(key)
        model[family] = table
    return data


def parse(data: dict[str, Any], source: str = "<config>") -> RunConfig:
    """Build a RunConfig from parsed TOML without checking it (``load.config_from_dict`` checks)."""
    migrate(data, source)
    sections: dict[str, Any] = {}
    for name, table in data.items():
        if name not in _SECTION_TYPES:
            raise _unknown_key(source, f"[{name}]", name, list(_SECTION_TYPES))
        if name == "stage":  # [[stage]]: an array of tables
            if not isinstance(table, list):
                raise ConfigError(source, "[[stage]]", "expected [[stage]] entries (an array of tables), "
                                                     "each with at_step and what changes")
            sections[name] = [_build_section(StageConfig, t, f"stage.{i + 1}", source) for i, t in enumerate(table)]
            continue
        sections[name] = _build_section(_SECTION_TYPES[name], table, name, source)
    return RunConfig(**sections)


def check(cfg: RunConfig, source: str = "<config>") -> None:
    """Reject impossible combinations with the key and what is allowed (stages: ``plan.stage_plan``)."""
    m, t, o, d, e = cfg.model, cfg.train, cfg.optim, cfg.data, cfg.eval

    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(source, key, msg)

    for key in ("n_layer", "d_model", "n_head", "block_size"):
        need(getattr(m, key) > 0, f"[model] {key}", f"found {getattr(m, key)}, must be > 0")
    need(m.head_dim >= 0, "[model] head_dim", f"found {m.head_dim}, must be >= 0 (0 = d_model / n_head)")
    need(
        m.head_dim > 0 or m.d_model % m.n_head == 0,
        "[model] n_head",
        f"d_model {m.d_model} is not divisible by n_head {m.n_head}; set head_dim explicitly or change n_head",
    )
    need(m.pos != "rope" or cfg.head_dim % 2 == 0, "[model] head_dim",
         f"RoPE needs an even head size, found {cfg.head_dim}")
    for spec in (m.attention, m.ffn, m.block, m.memory, m.shape):
        spec.check(m, need)
    if m.parametrization == "mup":
        need(not m.tie_embeddings, "[model] tie_embeddings", "μP treats the input embedding and the readout "
                                                             "differently (its learning rate, init and a 1/width "
                                                             "multiplier on the logits); set tie_embeddings = false")
        need(m.block.kind != "ngpt", "[model] parametrization", "nGPT keeps every weight on the unit sphere: it has its "
                                                                "own width rule; use parametrization = 'sp' with it")
    need(m.base_width >= 0, "[model] base_width", f"found {m.base_width}, must be >= 0 (0: d_model)")
    need(m.pos != "xl_relative" or m.attention.kind in ("mha", "gqa"), "[model] pos",
         f"xl_relative adds its distance term to one attention map; attention kind '{m.attention.kind}' has "
         f"others (use pos = 'rope' with it)")
    need(m.shape.kind == "stack" or not cfg.aux.enabled(m.n_layer), "[aux] layers",
         "T12's intermediate losses read every layer at full length; an hourglass's middle layers are shorter")
    need(not (m.memory.active and o.name == "ivon" and o.ivon_mc_samples > 1), "[optim] ivon_mc_samples",
         "each posterior sample would read the segment again and roll the memory twice; use 1 with a memory")
    need(not (m.memory.active and t.fsdp), "[train] fsdp", "a memory carries each rank's own streams; use DDP "
                                                          "(fsdp = false)")
    need(0.0 <= m.dropout < 1.0, "[model] dropout", f"found {m.dropout}, must be in [0, 1)")
    need(m.logit_softcap >= 0, "[model] logit_softcap", f"found {m.logit_softcap}, must be >= 0 (0 disables)")
    need(m.init_std > 0, "[model] init_std", f"found {m.init_std}, must be > 0")
    need(m.rope_base > 0, "[model] rope_base", f"found {m.rope_base}, must be > 0")
    need(
        m.output_projection or not m.output_projection_norm,
        "[model] output_projection_norm",
        "needs output_projection = true",
    )

    need(d.path != "", "[data] path", "is empty; give a corpus path or 'builtin:stories'")
    need(0.0 < d.val_fraction < 1.0, "[data] val_fraction", f"found {d.val_fraction}, must be in (0, 1)")
    need(0.0 <= d.test_fraction < 1.0 and d.val_fraction + d.test_fraction < 1.0, "[data] test_fraction",
         f"found {d.test_fraction}; it must be in [0, 1) and leave a training split (val_fraction + test_fraction < 1)")
    for key in ("val_tokens", "test_tokens"):
        need(getattr(d, key) >= 0, f"[data] {key}", f"found {getattr(d, key)}, must be >= 0 (0: use the fraction)")
    need(not d.raw_bytes or d.tokenizer == "bytes", "[data] raw_bytes",
         f"reads files as raw bytes, which only the bytes tokenizer can take (found tokenizer '{d.tokenizer}')")
    need(d.tokenizer != "", "[data] tokenizer", "is empty; use 'bytes' or a tiktoken encoding such as 'gpt2'")
    if d.tokenizer != "bytes":  # only the name; loading the encoding (maybe a download) waits for training
        from runspec.data.tokenizers import TokenizerError, check_name

        try:
            check_name(d.tokenizer)
        except TokenizerError as exc:
            raise ConfigError(source, "[data] tokenizer", str(exc)) from None

    need(0 < t.max_steps <= MAX_STEPS, "[train] max_steps",
         f"found {t.max_steps}, must be between 1 and {MAX_STEPS:,}")
    try:
        parse_time_budget(t.max_time)
    except ValueError as exc:
        raise ConfigError(source, "[train] max_time", str(exc)) from None
    for key in ("batch_size", "grad_accum"):
        need(getattr(t, key) > 0, f"[train] {key}", f"found {getattr(t, key)}, must be > 0")
    need(1 <= t.gpus <= 1024, "[train] gpus", f"found {t.gpus}, must be between 1 and 1024 (ranks on this machine)")
    need(1 <= t.nodes <= 1024, "[train] nodes", f"found {t.nodes}, must be between 1 and 1024 (machines)")
    if t.rdzv:
        try:
            parse_endpoint(t.rdzv)
        except ValueError as exc:
            raise ConfigError(source, "[train] rdzv", str(exc)) from None
    need(1 <= t.slots <= 64, "[train] slots", f"found {t.slots}, must be between 1 and 64 (slots of a device)")
    if t.fsdp:  # what FSDP2 sharding supports here; the rest trains under DDP (fsdp = false)
        need(o.name == "adamw", "[train] fsdp", f"works with optim.name = 'adamw' (found '{o.name}': Muon and IVON "
                                                f"need whole matrices); set fsdp = false to use DDP")
        need(not o.orthograd, "[train] fsdp", "⊥Grad projects whole gradients; set fsdp = false or orthograd = false")
        need(m.block.kind != "ngpt", "[train] fsdp", "nGPT renormalizes whole weight matrices each step; "
                                                     "set fsdp = false to train it under DDP")
        need(not cfg.stage, "[train] fsdp", "[[stage]] rebuilds the model from whole weights; set fsdp = false "
                                            "to grow or adapt under DDP")
        need(not cfg.init.from_, "[train] fsdp", "[init] from loads whole weights into the model; set fsdp = false")
    need(0 <= t.threads <= 1024, "[train] threads", f"found {t.threads}, must be between 0 (auto: the free cores) "
                                                    f"and 1024")
    for key in ("grad_clip", "checkpoint_every", "peak_tflops", "prefetch"):
        need(getattr(t, key) >= 0, f"[train] {key}", f"found {getattr(t, key)}, must be >= 0")
    need(t.device in ("auto", "cpu", "mps") or re.fullmatch(r"cuda(:\d+)?", t.device) is not None,
         "[train] device", f"found '{t.device}', allowed: auto, cpu, cuda, cuda:N, mps")

    need(o.lr > 0, "[optim] lr", f"found {o.lr}, must be > 0")
    need(0 <= o.min_lr <= o.lr, "[optim] min_lr", f"found {o.min_lr}, must be between 0 and lr ({o.lr})")
    need(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "[optim] betas",
         f"found {o.betas}, expected two numbers in [0, 1), e.g. [0.9, 0.99]")
    need(o.warmup_steps >= 0, "[optim] warmup_steps", f"found {o.warmup_steps}, must be >= 0")
    need(o.decay_steps >= 0, "[optim] decay_steps", f"found {o.decay_steps}, must be >= 0 (0 = max_steps)")
    need(0 < o.wsd_decay_fraction <= 1, "[optim] wsd_decay_fraction",
         f"found {o.wsd_decay_fraction}, must be in (0, 1]")
    need(o.weight_decay >= 0, "[optim] weight_decay", f"found {o.weight_decay}, must be >= 0")
    need(o.wte_lr_scale > 0, "[optim] wte_lr_scale", f"found {o.wte_lr_scale}, must be > 0")
    need(o.muon_lr > 0, "[optim] muon_lr", f"found {o.muon_lr}, must be > 0")
    if o.name == "ivon":
        need(o.ivon_ess >= 0, "[optim] ivon_ess", f"found {o.ivon_ess}, must be >= 0 (0 = training tokens)")
        need(o.ivon_hess_init > 0, "[optim] ivon_hess_init", f"found {o.ivon_hess_init}, must be > 0")
        need(0 < o.ivon_beta2 < 1, "[optim] ivon_beta2", f"found {o.ivon_beta2}, must be in (0, 1)")
        need(o.ivon_weight_decay >= 0, "[optim] ivon_weight_decay", f"found {o.ivon_weight_decay}, must be >= 0")
        need(o.ivon_mc_samples >= 1, "[optim] ivon_mc_samples", f"found {o.ivon_mc_samples}, must be >= 1")
        need(t.precision != "fp16", "[train] precision",
             "IVON averages gradients across posterior samples itself; use bf16 or fp32, not fp16 with a grad scaler")
        need(not o.orthograd, "[optim] orthograd", "⊥Grad wraps a gradient-based step; IVON samples weights "
                                                  "around its own mean, so the two do not compose")

    need(0 <= e.stride < m.block_size, "[eval] stride",
         f"found {e.stride}, must be between 0 (off) and block_size - 1 ({m.block_size - 1})")
    for key in ("every", "batches", "final_max_batches", "sample_tokens", "top_k", "posterior_samples", "full_every"):
        need(getattr(e, key) >= 0, f"[eval] {key}", f"found {getattr(e, key)}, must be >= 0")
    need(e.batches > 0 or e.every == 0, "[eval] batches",
         f"found 0 with every = {e.every}; a running validation needs at least one batch (or set every = 0)")
    need(e.temperature > 0, "[eval] temperature", f"found {e.temperature}, must be > 0")
    need(cfg.log.every > 0, "[log] every", f"found {cfg.log.every}, must be > 0")
    need(cfg.conviction.weight >= 0, "[conviction] weight", f"found {cfg.conviction.weight}, must be >= 0")
    a = cfg.aux
    bad = [x for x in a.layers if not 1 <= x < m.n_layer]
    need(not bad, "[aux] layers", f"found {bad}; intermediate layers are numbered 1 .. {m.n_layer - 1} "
                                  f"(the last layer, {m.n_layer}, already has the LM loss)")
    need(a.layer_weight >= 0, "[aux] layer_weight", f"found {a.layer_weight}, must be >= 0")
    need(a.target_weight >= 0, "[aux] target_weight", f"found {a.target_weight}, must be >= 0")
    need(0 <= a.targets < m.block_size, "[aux] targets",
         f"found {a.targets}, must be between 0 and block_size - 1 ({m.block_size - 1})")
    ref = cfg.init.from_
    need(ref == "" or (ref.strip() == ref and not ref.endswith(":")), "[init] from",
         f"found '{ref}'; give a run id, 'RUN:STEP', a run directory or a checkpoint file")


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """As TOML tables: [init] from (the field is from_), no empty [[stage]] list."""
    data = dataclasses.asdict(cfg)
    data["init"] = {"from": data["init"].pop("from_")}
    if not data["stage"]:
        del data["stage"]
    if not data["init"]["from"]:
        del data["init"]
    return data


def resolved_dict(cfg: RunConfig) -> dict[str, Any]:
    """The config with defaults and derived values filled in, as written to resolved.toml."""
    data = to_dict(cfg)
    data["model"]["head_dim"] = cfg.head_dim
    data["model"]["ffn"]["d_ff"] = cfg.d_ff
    data["optim"]["decay_steps"] = cfg.decay_steps
    return data
