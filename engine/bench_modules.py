"""``python -m engine bench-modules``: every attention and feed-forward kind timed at one shape,
and pairs of "two ways to write the same thing".

Each row builds the real module from the registry (the same code a run trains) and measures
forward + backward on a (batch, seq, d_model) input and, for attention, one cached decode step
after a prefill of seq - 1 tokens. Timings are the median and interquartile range of adaptive
repeats (torch.utils.benchmark) after ``warmup`` untimed calls, and the table warns when other
processes were busy on the CPUs or a row's timings did not settle. Memory is what autograd
keeps for the backward pass (activations, not weights: the same figure on any device), and on
CUDA also the peak allocated during the step.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from engine.device import pick_device, sync
from runspec.config.load import config_from_dict
from runspec.config.schema import ModelConfig
from zoo.modules import module_for
from zoo.registry import FAMILIES

MB = 1024 * 1024


@dataclass
class Row:
    group: str  # attention, ffn, pair
    name: str
    params: int
    fwd_bwd_ms: float | None
    decode_ms: float | None = None
    fwd_bwd_iqr_ms: float | None = None  # the spread of the timings: interquartile range
    decode_iqr_ms: float | None = None
    cache_per_token: int | None = None  # numbers kept per token per layer while decoding
    saved_mb: float | None = None  # tensors autograd keeps for the backward pass
    peak_mb: float | None = None  # CUDA only: peak allocated during the timed step
    note: str = ""


@dataclass
class Shape:
    d_model: int = 256
    seq: int = 256
    batch: int = 16
    heads: int = 8


@dataclass
class Timing:
    median_ms: float
    iqr_ms: float | None  # the interquartile range of the timed blocks (None: too few blocks to say)
    runs: int  # calls timed

    @property
    def spread(self) -> float:
        """IQR / median: 0.1 means the middle half of the timings spans 10% of the median."""
        return self.iqr_ms / self.median_ms if self.median_ms and self.iqr_ms is not None else float("inf")


SETTLED = 0.1  # repeats go on until IQR / median is below this (or the row's time runs out)


def timing(fn: Callable[[], object], device: torch.device, reps: int, warmup: int, max_s: float) -> Timing:
    """``warmup`` untimed calls, then torch.utils.benchmark's adaptive repeats: blocks of calls
    (many per block when one call is short, so the timer's own cost vanishes) until the IQR is
    under SETTLED of the median, for at least ``reps`` x 20 ms and at most ``max_s`` seconds. The
    Timer keeps this process's thread count (its default, one thread, would time another program)
    and synchronizes CUDA around each block."""
    from torch.utils.benchmark import Timer

    for _ in range(warmup):
        fn()
    sync(device)
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    m = timer.adaptive_autorange(threshold=SETTLED, min_run_time=min(max_s, 0.02 * reps), max_run_time=max_s)
    # fewer than 4 blocks (a call slower than the whole budget): no quartiles to speak of
    return Timing(m.median * 1000, m.iqr * 1000 if len(m.times) >= 4 else None, len(m.times) * m.number_per_run)


def saved_bytes(fn: Callable[[], torch.Tensor], exclude: set[int]) -> tuple[torch.Tensor, int]:
    """Run ``fn`` and count the distinct storages autograd saves for backward, leaving out the
    ones in ``exclude`` (parameters: they exist whether or not anything is saved)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in exclude:
            seen[ptr] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def peak_mb(fn: Callable[[], object], device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / MB


def model_config(shape: Shape, attention: dict | None = None, ffn: dict | None = None) -> ModelConfig:
    model = {"d_model": shape.d_model, "n_head": shape.heads, "block_size": shape.seq, "pos": "rope",
             "norm": "rmsnorm", "bias": False}
    if attention:
        model["attention"] = attention
    if ffn:
        model["ffn"] = ffn
    return config_from_dict({"model": model}, "bench modules").model


# the rows: every registered kind with its defaults, plus variants whose cost differs in kind
def attention_rows(shape: Shape) -> list[tuple[str, dict]]:
    """Every attention kind's own rows (its spec's bench_variants), in registry order."""
    return [row for cls in FAMILIES["attention"].values() for row in cls.bench_variants(shape.d_model, shape.seq)]


def ffn_rows(shape: Shape) -> list[tuple[str, dict]]:
    return [row for cls in FAMILIES["ffn"].values() for row in cls.bench_variants(shape.d_model, shape.seq)]


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _fwd_bwd(module: torch.nn.Module, x: torch.Tensor, call: Callable) -> Callable[[], torch.Tensor]:
    def step() -> torch.Tensor:
        module.zero_grad(set_to_none=True)
        y = call(x)
        y.float().square().mean().backward()
        return y
    return step


def _measure_training(group: str, name: str, module: torch.nn.Module, x: torch.Tensor, call: Callable,
                      device: torch.device, reps: int, warmup: int, max_s: float) -> Row:
    step = _fwd_bwd(module, x, call)
    t = timing(step, device, reps, warmup, max_s)
    exclude = {p.untyped_storage().data_ptr() for p in module.parameters()}
    _, saved = saved_bytes(lambda: call(x), exclude)
    return Row(group, name, _params(module), t.median_ms, fwd_bwd_iqr_ms=t.iqr_ms, saved_mb=saved / MB,
               peak_mb=peak_mb(step, device))


def bench_attention(shape: Shape, device: torch.device, reps: int, warmup: int, max_s: float) -> list[Row]:
    rows = []
    x = torch.randn(shape.batch, shape.seq, shape.d_model, device=device, requires_grad=True)
    for name, table in attention_rows(shape):
        m = model_config(shape, attention=table)
        module = module_for(m.attention)(m, m.attention, 0).to(device)
        row = _measure_training("attention", name, module, x, module, device, reps, warmup, max_s)
        # one cached decode step after a prefill of seq - 1 tokens, the cache restored each time
        module.eval()
        with torch.no_grad():
            cache = module.new_cache()
            module(x[:, :-1].detach(), cache)
            kept = dict(cache.tensors)
            row.cache_per_token = cache.numbers_per_token()
            last = x[:, -1:].detach()

            def decode() -> None:
                cache.tensors = dict(kept)
                module(last, cache)
            t = timing(decode, device, reps, warmup, max_s)
            row.decode_ms, row.decode_iqr_ms = t.median_ms, t.iqr_ms
        rows.append(row)
    return rows


def bench_ffn(shape: Shape, device: torch.device, reps: int, warmup: int, max_s: float) -> list[Row]:
    from zoo.nn.collect import Collector

    rows = []
    x = torch.randn(shape.batch, shape.seq, shape.d_model, device=device, requires_grad=True)
    for name, table in ffn_rows(shape):
        m = model_config(shape, ffn=table)
        module = module_for(m.ffn)(m, m.ffn).to(device)
        # the MoE's named losses are part of its training cost: collect them as a run does
        row = _measure_training("ffn", name, module, x, lambda t: module(t, Collector()), device, reps, warmup, max_s)
        with torch.no_grad():
            module.eval()
            one = x[:, -1:].detach()
            t = timing(lambda: module(one), device, reps, warmup, max_s)
            row.decode_ms, row.decode_iqr_ms = t.median_ms, t.iqr_ms
        rows.append(row)
    return rows


def _explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    T = q.size(-2)
    s = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    return torch.softmax(s.masked_fill(future, float("-inf")), dim=-1) @ v


def bench_pairs(shape: Shape, device: torch.device, reps: int, warmup: int, max_s: float, compile_: bool) -> list[Row]:
    rows = []
    B, T, H = shape.batch, shape.seq, shape.heads
    D = shape.d_model // H
    qkv = [torch.randn(B, H, T, D, device=device, requires_grad=True) for _ in range(3)]

    def attention_step(fn: Callable) -> Callable[[], None]:
        def step() -> None:
            for t in qkv:
                t.grad = None
            fn(*qkv).square().mean().backward()
        return step

    for name, fn in (("attention: sdpa", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
                     ("attention: explicit softmax", _explicit_attention)):
        _, saved = saved_bytes(lambda: fn(*qkv), set())
        step = attention_step(fn)
        t = timing(step, device, reps, warmup, max_s)
        rows.append(Row("pair", name, 0, t.median_ms, fwd_bwd_iqr_ms=t.iqr_ms, saved_mb=saved / MB,
                        peak_mb=peak_mb(step, device)))
    x = torch.randn(B, T, shape.d_model, device=device, requires_grad=True)
    for name, fused in (("qkv: fused (one matmul)", True), ("qkv: separate (three)", False)):
        m = model_config(shape, attention={"kind": "mha", "fused_qkv": fused})
        module = module_for(m.attention)(m, m.attention, 0).to(device)
        rows.append(_measure_training("pair", name, module, x, module, device, reps, warmup, max_s))
    rows += bench_muon(shape, device, reps, warmup, max_s)
    rows += bench_compile(shape, device, reps, warmup, max_s) if compile_ else []
    return rows


def bench_muon(shape: Shape, device: torch.device, reps: int, warmup: int, max_s: float) -> list[Row]:
    """One optimizer step over the matrices of one block (q/k/v/o and a SwiGLU MLP)."""
    from engine.muon import Muon

    d = shape.d_model
    f = 4 * d
    shapes = [(3 * d, d), (d, d), (f, d), (f, d), (d, f)]
    rows = []
    for name, make in (("muon: ours", lambda ps: Muon(ps, lr=0.02)),
                       ("muon: torch.optim.Muon", lambda ps: torch.optim.Muon(ps, lr=0.02))):
        ps = [torch.nn.Parameter(torch.randn(s, device=device) * 0.02) for s in shapes]
        for p in ps:
            p.grad = torch.randn_like(p)
        try:
            opt = make(ps)
        except Exception as e:  # an older torch without Muon: say so in the table
            rows.append(Row("pair", name, sum(p.numel() for p in ps), None, note=f"unavailable: {e}"))
            continue
        t = timing(opt.step, device, reps, warmup, max_s)
        rows.append(Row("pair", name, sum(p.numel() for p in ps), t.median_ms, fwd_bwd_iqr_ms=t.iqr_ms,
                        note="one step, one block's matrices"))
    return rows


def context_rows(shape: Shape) -> list[tuple[str, dict]]:
    """The plain model, then every memory and shape kind's own rows (their specs' bench_variants)."""
    rows = [("plain", {})]
    for family in ("memory", "shape"):
        rows += [(name, {family: table}) for cls in FAMILIES[family].values()
                 for name, table in cls.bench_variants(shape.d_model, shape.seq)]
    return rows


CONTEXT_LAYERS = 4


def bench_context(shape: Shape, device: torch.device, reps: int, warmup: int, max_s: float) -> list[Row]:
    """Whole small models (4 layers) at context seq/2, seq and 2 seq: a training step's time and the
    activations kept for backward, per token; a memory kind's step runs with its memory full."""
    from engine.model import build_model

    rows = []
    for context in (max(8, shape.seq // 2), shape.seq, 2 * shape.seq):
        for name, keys in context_rows(Shape(shape.d_model, context, shape.batch, shape.heads)):
            cfg = config_from_dict({"model": {"n_layer": CONTEXT_LAYERS, "d_model": shape.d_model,
                                              "n_head": shape.heads, "block_size": context, "pos": "rope",
                                              "norm": "rmsnorm", "bias": False, **keys}}, "bench modules")
            model = build_model(cfg, 256, seed=0).to(device)
            x = torch.randint(0, 256, (shape.batch, context), device=device)
            memory = model.new_memory(training=True) if model.memory is not None else None
            more = {"memory": memory} if memory is not None else {}
            if memory is not None:
                for _ in range(4):  # fill the memory (and the compressed one) with a few segments
                    with torch.no_grad():
                        model(x, **more)
                kept = [(s.mem, s.cmem) for s in memory]

            def call(_x: torch.Tensor) -> torch.Tensor:
                out = model(x, x, **more).loss
                if memory is not None:  # the same memory for every timed step
                    for s, (mem, cmem) in zip(memory, kept):
                        s.mem, s.cmem = mem, cmem
                return out

            row = _measure_training("context", f"{name} @ {context}", model, x, call, device, reps, warmup, max_s)
            tokens = shape.batch * context
            row.note = (f"{1000 * row.fwd_bwd_ms / tokens:.1f} µs/token, {1024 * row.saved_mb / tokens:.1f} KB/token "
                        f"kept for backward")
            rows.append(row)
    return rows


def bench_compile(shape: Shape, device: torch.device, reps: int, warmup: int, max_s: float) -> list[Row]:
    """A whole block (prenorm, mha, swiglu) eager and under torch.compile."""
    from zoo.modules import build_block

    m = model_config(shape)
    x = torch.randn(shape.batch, shape.seq, shape.d_model, device=device, requires_grad=True)
    rows = []
    block = build_block(m, 0).to(device)
    rows.append(_measure_training("pair", "block: eager", block, x, block, device, reps, warmup, max_s))
    try:
        compiled = torch.compile(block)
        t0 = time.perf_counter()
        _fwd_bwd(block, x, compiled)()
        sync(device)
        first = time.perf_counter() - t0
        step = _fwd_bwd(block, x, compiled)
        t = timing(step, device, reps, warmup, max_s)
        rows.append(Row("pair", "block: torch.compile", _params(block), t.median_ms, fwd_bwd_iqr_ms=t.iqr_ms,
                        peak_mb=peak_mb(step, device), note=f"first call (compiling) {first:.1f} s"))
    except Exception as e:  # no C++ compiler, an unsupported backend: the table says so
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        rows.append(Row("pair", "block: torch.compile", _params(block), None, note=f"unavailable: {reason[:120]}"))
    return rows


class LoadMeter:
    """How busy other processes kept the CPUs while a benchmark ran: the machine's busy CPU time
    less this process's own, over the wall clock, in cores (psutil)."""

    def __init__(self) -> None:
        import psutil

        self._ps = psutil
        self._me = psutil.Process()
        self.cores = psutil.cpu_count() or 1
        self._start = (time.monotonic(), self._busy(), self._own())

    def _busy(self) -> float:
        t = self._ps.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def _own(self) -> float:
        t = self._me.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def others(self) -> float:
        """Cores' worth of CPU other processes used since the meter started."""
        wall0, busy0, own0 = self._start
        wall = max(1e-9, time.monotonic() - wall0)
        return max(0.0, ((self._busy() - busy0) - (self._own() - own0)) / wall)


BUSY_SHARE = 0.25  # other processes using more than this share of the cores: the timings are suspect


def warnings(rows: list[dict], others: float, cores: int, device: str) -> list[str]:
    """Why the table's comparisons may not hold, with the figures: the machine's load (on the
    CPU, where other processes take the cores the timings need) and rows whose spread is wide."""
    out = []
    if device == "cpu" and others > BUSY_SHARE * cores:
        out.append(f"other processes kept {others:.1f} of {cores} cores busy while this ran: CPU timings are "
                   f"slowed unevenly (a row measured in a busy moment looks slower); rerun on an idle machine")
    wide = [(r["name"], what, r[iqr] / r[ms] if r.get(iqr) is not None else float("inf")) for r in rows
            for what, ms, iqr in (("fwd+bwd", "fwd_bwd_ms", "fwd_bwd_iqr_ms"), ("decode", "decode_ms", "decode_iqr_ms"))
            if r.get(ms) and (r.get(iqr) is None or r[iqr] / r[ms] > SETTLED)]
    if wide:
        listed = ", ".join(f"{n} {w} " + (f"±{100 * x:.0f}%" if x != float("inf") else "(too few repeats)")
                           for n, w, x in sorted(wide, key=lambda t: -t[2])[:6])
        out.append(f"{len(wide)} timing(s) did not settle (IQR over {SETTLED:.0%} of the median within --max-seconds): "
                   f"{listed}{' ...' if len(wide) > 6 else ''}; differences smaller than that are noise")
    return out


GROUPS = ("attention", "ffn", "pair", "context")


def run(shape: Shape, device_name: str, reps: int, warmup: int, max_s: float, compile_: bool,
        groups: tuple[str, ...] = GROUPS) -> dict:
    for g in groups:
        if g not in GROUPS:
            raise ValueError(f"--groups {g}: not a table of bench modules; choose from {', '.join(GROUPS)}")
    device = pick_device(device_name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device_name}: CUDA is not available on this machine; use --device cpu")
    torch.manual_seed(0)
    meter = LoadMeter()
    tables = {"attention": lambda: bench_attention(shape, device, reps, warmup, max_s),
              "ffn": lambda: bench_ffn(shape, device, reps, warmup, max_s),
              "pair": lambda: bench_pairs(shape, device, reps, warmup, max_s, compile_),
              "context": lambda: bench_context(shape, device, reps, warmup, max_s)}
    rows = [row for g in GROUPS if g in groups for row in tables[g]()]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    others = meter.others()
    result = {"device": name, "shape": asdict(shape), "reps": reps, "warmup": warmup, "max_seconds": max_s,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": [asdict(r) for r in rows],
              "other_processes_cores": round(others, 2), "cores": meter.cores}
    result["warnings"] = warnings(result["rows"], others, meter.cores, device.type)
    return result


def _fmt(v: float | int | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _timed(ms: float | None, iqr: float | None, spec: str) -> str:
    """'1.23 ±4%': the median and its IQR as a share of it."""
    if ms is None:
        return "-"
    return f"{ms:{spec}}" + (f" ±{100 * iqr / ms:.0f}%" if iqr is not None and ms else " ±?")


def table(result: dict) -> str:
    s = result["shape"]
    lines = [f"bench modules on {result['device']} (torch {result['torch']}, {result.get('threads', '?')} threads): "
             f"batch {s['batch']} × seq {s['seq']}, d_model {s['d_model']}, {s['heads']} heads; median ± IQR "
             f"(as % of the median) of adaptive repeats after {result['warmup']} warm-up",
             f"{'':<30}{'params':>10}{'fwd+bwd ms':>16}{'decode ms':>15}{'cache/tok':>11}{'saved MB':>10}"
             f"{'peak MB':>9}  note"]
    group = None
    for r in result["rows"]:
        if r["group"] != group:
            group = r["group"]
            lines.append({"attention": "attention kinds", "ffn": "feed-forward kinds",
                          "pair": "two ways to write the same thing",
                          "context": f"memories and shapes: {CONTEXT_LAYERS}-layer models, a training step at each "
                                     f"context (memory full)"}[group])
        lines.append(f"  {r['name']:<28}{r['params']:>10,}{_timed(r['fwd_bwd_ms'], r.get('fwd_bwd_iqr_ms'), '.2f'):>16}"
                     f"{_timed(r['decode_ms'], r.get('decode_iqr_ms'), '.3f'):>15}{_fmt(r['cache_per_token'], ','):>11}"
                     f"{_fmt(r['saved_mb'], '.1f'):>10}{_fmt(r['peak_mb'], '.1f'):>9}  {r['note']}")
    lines.append(f"other processes used {result.get('other_processes_cores', 0):.1f} of {result.get('cores', '?')} "
                 f"cores meanwhile")
    lines += [f"warning: {w}" for w in result.get("warnings", [])]
    return "\n".join(lines)


def main(args) -> int:
    shape = Shape(args.d_model, args.seq, args.batch, args.heads)
    groups = tuple(g.strip() for g in args.groups.split(",") if g.strip())
    result = run(shape, args.device, args.reps, args.warmup, args.max_seconds, not args.no_compile, groups)
    print(json.dumps(result) if args.json else table(result))
    return 0
