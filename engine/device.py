"""Device selection, precision contexts and the peak FLOP/s that MFU is measured against."""

from __future__ import annotations

import contextlib
import time

import torch

# Dense bf16/fp16 tensor-core peaks (TFLOP/s) from the vendors' data sheets; fp32 training
# on these uses TF32, about half. Matched by substring of torch.cuda.get_device_name().
GPU_PEAK_TFLOPS = {
    "H200": 989.0, "H100": 989.0, "A100": 312.0, "A10G": 125.0, "A10": 125.0, "L40S": 362.0,
    "L40": 181.0, "L4": 121.0, "RTX 4090": 165.0, "RTX 4080": 97.0, "RTX 3090": 71.0,
    "RTX 3080": 59.5, "V100": 125.0, "T4": 65.0,
}


class DeviceError(ValueError):
    """The config asks for a device this machine does not have (one line, bad input)."""


def pick_device(requested: str) -> torch.device:
    if requested != "auto":
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise DeviceError(f"[train] device = {requested!r} is not a device torch knows; use auto, cpu, cuda, "
                              f"cuda:N or mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError(f"[train] device = {requested!r}, but torch sees no CUDA device here (torch "
                              f"{torch.__version__}); use device = 'auto' or 'cpu'")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"[train] device = {requested!r}, but this machine has {torch.cuda.device_count()} "
                              f"CUDA device(s)")
        if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError(f"[train] device = {requested!r}, but MPS is not available here; use 'auto' or 'cpu'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_context(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


_cpu_peak_cache: float | None = None


def measured_cpu_peak_flops() -> float:
    """The best fp32 matmul rate this CPU reaches with torch's BLAS and its thread count.
    MFU on CPU therefore reads as 'share of what this machine's matmuls can do'; there is no
    honest data-sheet number for an arbitrary CPU."""
    global _cpu_peak_cache
    if _cpu_peak_cache is None:
        n = 1024
        g = torch.Generator().manual_seed(0)  # never the training RNG: the first run in a process would differ
        a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        a @ b  # warm-up
        best = 0.0
        for _ in range(5):
            t0 = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - t0))
        _cpu_peak_cache = best
    return _cpu_peak_cache


def peak_flops(device: torch.device, precision: str, override_tflops: float) -> tuple[float, str]:
    """(peak FLOP/s, how it was chosen)."""
    if override_tflops > 0:
        return override_tflops * 1e12, "config train.peak_tflops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tf in GPU_PEAK_TFLOPS.items():
            if key in name:
                scale = 0.5 if precision == "fp32" else 1.0
                return tf * 1e12 * scale, f"data sheet {key} {'tf32' if scale < 1 else precision}"
        return 100e12, f"unknown GPU '{name}': assumed 100 TFLOP/s; set train.peak_tflops"
    return measured_cpu_peak_flops(), "measured fp32 matmul peak of this CPU"


_bf16_fast: dict[str, bool] = {}


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls beat fp32 ones here: always on CUDA; on a CPU, measured once per
    process (a 256 x 512 product, best of 5 each way), because CPUs with bf16 units (AVX512-BF16,
    AMX) run them about twice as fast while the others emulate them far slower than fp32."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    if "cpu" not in _bf16_fast:
        g = torch.Generator().manual_seed(0)  # never the training RNG
        a, b = torch.randn(256, 512, generator=g), torch.randn(512, 256, generator=g)

        def best(x, y) -> float:
            x @ y
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(4):
                    x @ y
                times.append(time.perf_counter() - t0)
            return min(times)

        _bf16_fast["cpu"] = best(a.bfloat16(), b.bfloat16()) < 0.8 * best(a, b)
    return _bf16_fast["cpu"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
