"""CPU and memory figures of this machine, for where there is no GPU to show (the Training tab
beside a CPU run), through psutil."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class HostFigures:
    cpu_pct: float | None  # busy share of all cores since the previous sample
    mem_used_gb: float | None
    mem_total_gb: float | None
    load: float | None  # 1-minute load average
    cores: int

    def line(self) -> str:
        parts = []
        if self.cpu_pct is not None:
            parts.append(f"CPU {self.cpu_pct:.0f}% of {self.cores}")
        elif self.load is not None:
            parts.append(f"load {self.load:.1f} on {self.cores} cores")
        if self.mem_used_gb is not None and self.mem_total_gb:
            parts.append(f"RAM {self.mem_used_gb:.1f}/{self.mem_total_gb:.0f} GB")
        return " · ".join(parts) or "no CPU figures on this system"


class HostMonitor:
    """Samples through psutil (the same figures on Linux, macOS and Windows)."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._started = False  # cpu_percent's first call has no earlier sample to compare with

    def _cpu(self) -> float | None:
        value = self._psutil.cpu_percent(interval=None)  # busy share since the previous call
        started, self._started = self._started, True
        return value if started else None

    def _memory(self) -> tuple[float | None, float | None]:
        try:
            vm = self._psutil.virtual_memory()
        except (OSError, RuntimeError):
            return None, None
        return (vm.total - vm.available) / 2**30, vm.total / 2**30

    def sample(self) -> HostFigures:
        used, total = self._memory()
        try:
            load = self._psutil.getloadavg()[0]
        except (OSError, AttributeError):
            load = None
        return HostFigures(self._cpu(), used, total, load, self._psutil.cpu_count() or 1)
