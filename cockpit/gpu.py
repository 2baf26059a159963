"""GPU figures through NVML (the nvidia-ml-py package). No NVIDIA GPU or no NVML is a
reported state, never an error."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass


@dataclass
class GpuSample:
    index: int
    name: str
    util: float  # percent
    mem_used_mb: float
    mem_total_mb: float
    temp_c: float
    power_w: float | None


class GpuMonitor:
    def __init__(self) -> None:
        self.error: str | None = None
        self._nvml = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
        except Exception as e:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded...
            self.error = f"NVML unavailable: {e}" if str(e) else f"NVML unavailable: {type(e).__name__}"

    def sample(self) -> list[GpuSample]:
        if self._nvml is None:
            return []
        n = self._nvml
        out = []
        try:
            for i in range(n.nvmlDeviceGetCount()):
                h = n.nvmlDeviceGetHandleByIndex(i)
                mem = n.nvmlDeviceGetMemoryInfo(h)
                try:
                    power = n.nvmlDeviceGetPowerUsage(h) / 1000.0
                except n.NVMLError:
                    power = None
                name = n.nvmlDeviceGetName(h)
                out.append(GpuSample(i, name.decode() if isinstance(name, bytes) else name,
                                     float(n.nvmlDeviceGetUtilizationRates(h).gpu), mem.used / 2**20,
                                     mem.total / 2**20, float(n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)),
                                     power))
        except n.NVMLError as e:
            self.error = f"NVML query failed: {e}"
            return []
        return out

    def device_count(self) -> int | None:
        """How many GPUs this machine has, or None without NVML. COCKPIT_FAKE_GPUS=N pretends
        N exist (the worker's slot logic is tested on machines without any)."""
        fake = os.environ.get("COCKPIT_FAKE_GPUS")
        if fake:
            return int(fake)
        if self._nvml is None:
            return None
        try:
            return int(self._nvml.nvmlDeviceGetCount())
        except self._nvml.NVMLError as e:
            self.error = f"NVML query failed: {e}"
            return None

    def snapshot(self) -> dict:
        gpus = self.sample()
        return {"available": self._nvml is not None and self.error is None, "error": self.error,
                "gpus": [asdict(g) for g in gpus]}


def ranks_refusal(ranks: int, device: str = "auto") -> str:
    """Why this machine cannot start ``ranks`` ranks of a run here; '' when it can. GPUs take
    one rank each; without one (or with device = "cpu") every rank is a process on the CPU, and
    more of them than cores only makes each slower (64 ranks on 2 cores loaded a machine to 80+)."""
    if ranks <= 1:
        return ""
    gpus = GpuMonitor().device_count() if device != "cpu" else None
    if gpus:
        return "" if ranks <= gpus else f"this machine has {gpus} GPU(s): one rank each"
    cores = os.cpu_count() or 1
    return "" if ranks <= cores else f"this machine has {cores} CPU cores and no GPU for these ranks"

