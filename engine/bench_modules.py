"""``python -m engine bench-modules``: every attention and feed-forward kind timed at one shape,
and pairs of "two ways to write the same thing".

Each row builds the real module from the registry (the same code a run trains) and measures
forward + backward on a (batch, seq, d_model) input and, for attention, one cached decode step
after a prefill of seq - 1 tokens. Timings are the median of ``reps`` repetitions after
``warmup`` untimed ones, with the device synchronized around each. Memory is what autograd
keeps for the backward pass (activations, not weights: the same figure on any device), and on
CUDA also the peak allocated during the step.
"""

from __future__ import annotations

import json
import statistics
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


def median_ms(fn: Callable[[], object], device: torch.device, reps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


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
                      device: torch.device, reps: int, warmup: int) -> Row:
    step = _fwd_bwd(module, x, call)
    ms = median_ms(step, device, reps, warmup)
    exclude = {p.untyped_storage().data_ptr() for p in module.parameters()}
    _, saved = saved_bytes(lambda: call(x), exclude)
    return Row(group, name, _params(module), ms, saved_mb=saved / MB, peak_mb=peak_mb(step, device))


def bench_attention(shape: Shape, device: torch.device, reps: int, warmup: int) -> list[Row]:
    rows = []
    x = torch.randn(shape.batch, shape.seq, shape.d_model, device=device, requires_grad=True)
    for name, table in attention_rows(shape):
        m = model_config(shape, attention=table)
        module = module_for(m.attention)(m, m.attention, 0).to(device)
        row = _measure_training("attention", name, module, x, module, device, reps, warmup)
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
            row.decode_ms = median_ms(decode, device, reps, warmup)
        rows.append(row)
    return rows


def bench_ffn(shape: Shape, device: torch.device, reps: int, warmup: int) -> list[Row]:
    from zoo.nn.collect import Collector

    rows = []
    x = torch.randn(shape.batch, shape.seq, shape.d_model, device=device, requires_grad=True)
    for name, table in ffn_rows(shape):
        m = model_config(shape, ffn=table)
        module = module_for(m.ffn)(m, m.ffn).to(device)
        # the MoE's named losses are part of its training cost: collect them as a run does
        row = _measure_training("ffn", name, module, x, lambda t: module(t, Collector()), device, reps, warmup)
        with torch.no_grad():
            module.eval()
            one = x[:, -1:].detach()
            row.decode_ms = median_ms(lambda: module(one), device, reps, warmup)
        rows.append(row)
    return rows


def _explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    T = q.size(-2)
    s = (q @ k.transpose(-2, -1)) * q.size(-1) ** -0.5
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    return torch.softmax(s.masked_fill(future, float("-inf")), dim=-1) @ v


def bench_pairs(shape: Shape, device: torch.device, reps: int, warmup: int, compile_: bool) -> list[Row]:
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
        rows.append(Row("pair", name, 0, median_ms(step, device, reps, warmup), saved_mb=saved / MB,
                        peak_mb=peak_mb(step, device)))
    x = torch.randn(B, T, shape.d_model, device=device, requires_grad=True)
    for name, fused in (("qkv: fused (one matmul)", True), ("qkv: separate (three)", False)):
        m = model_config(shape, attention={"kind": "mha", "fused_qkv": fused})
        module = module_for(m.attention)(m, m.attention, 0).to(device)
        rows.append(_measure_training("pair", name, module, x, module, device, reps, warmup))
    rows += bench_muon(shape, device, reps, warmup)
    rows += bench_compile(shape, device, reps, warmup) if compile_ else []
    return rows


def bench_muon(shape: Shape, device: torch.device, reps: int, warmup: int) -> list[Row]:
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
        rows.append(Row("pair", name, sum(p.numel() for p in ps), median_ms(opt.step, device, reps, warmup),
                        note="one step, one block's matrices"))
    return rows


def bench_compile(shape: Shape, device: torch.device, reps: int, warmup: int) -> list[Row]:
    """A whole block (prenorm, mha, swiglu) eager and under torch.compile."""
    from zoo.modules import build_block

    m = model_config(shape)
    x = torch.randn(shape.batch, shape.seq, shape.d_model, device=device, requires_grad=True)
    rows = []
    block = build_block(m, 0).to(device)
    rows.append(_measure_training("pair", "block: eager", block, x, block, device, reps, warmup))
    try:
        compiled = torch.compile(block)
        t0 = time.perf_counter()
        _fwd_bwd(block, x, compiled)()
        sync(device)
        first = time.perf_counter() - t0
        step = _fwd_bwd(block, x, compiled)
        rows.append(Row("pair", "block: torch.compile", _params(block), median_ms(step, device, reps, warmup),
                        peak_mb=peak_mb(step, device), note=f"first call (compiling) {first:.1f} s"))
    except Exception as e:  # no C++ compiler, an unsupported backend: the table says so
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        rows.append(Row("pair", "block: torch.compile", _params(block), None, note=f"unavailable: {reason[:120]}"))
    return rows


def run(shape: Shape, device_name: str, reps: int, warmup: int, compile_: bool) -> dict:
    device = pick_device(device_name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device_name}: CUDA is not available on this machine; use --device cpu")
    torch.manual_seed(0)
    rows = bench_attention(shape, device, reps, warmup) + bench_ffn(shape, device, reps, warmup) \
        + bench_pairs(shape, device, reps, warmup, compile_)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device": name, "shape": asdict(shape), "reps": reps, "warmup": warmup, "torch": torch.__version__,
            "rows": [asdict(r) for r in rows]}


def _fmt(v: float | int | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(result: dict) -> str:
    s = result["shape"]
    lines = [f"bench modules on {result['device']} (torch {result['torch']}): batch {s['batch']} × seq {s['seq']}, "
             f"d_model {s['d_model']}, {s['heads']} heads; median of {result['reps']} after {result['warmup']} warm-up",
             f"{'':<30}{'params':>10}{'fwd+bwd ms':>12}{'decode ms':>11}{'cache/tok':>11}{'saved MB':>10}{'peak MB':>9}  note"]
    group = None
    for r in result["rows"]:
        if r["group"] != group:
            group = r["group"]
            lines.append({"attention": "attention kinds", "ffn": "feed-forward kinds",
                          "pair": "two ways to write the same thing"}[group])
        lines.append(f"  {r['name']:<28}{r['params']:>10,}{_fmt(r['fwd_bwd_ms'], '.2f'):>12}"
                     f"{_fmt(r['decode_ms'], '.3f'):>11}{_fmt(r['cache_per_token'], ','):>11}"
                     f"{_fmt(r['saved_mb'], '.1f'):>10}{_fmt(r['peak_mb'], '.1f'):>9}  {r['note']}")
    return "\n".join(lines)


def main(args) -> int:
    shape = Shape(args.d_model, args.seq, args.batch, args.heads)
    result = run(shape, args.device, args.reps, args.warmup, not args.no_compile)
    print(json.dumps(result) if args.json else table(result))
    return 0
