"""CPU and memory figures of this machine, for where there is no GPU to show (the Training tab
beside a CPU run). Linux: /proc/stat and /proc/meminfo; elsewhere the load average only."""

from __future__ import annotations

import os
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
    def __init__(self) -> None:
        self._last: tuple[int, int] | None = None  # (busy, total) jiffies at the previous sample

    def _cpu(self) -> float | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        total = sum(fields[:8])
        now = (total - idle, total)
        last, self._last = self._last, now
        if last is None or now[1] <= last[1]:
            return None
        return 100.0 * (now[0] - last[0]) / (now[1] - last[1])

    @staticmethod
    def _memory() -> tuple[float | None, float | None]:
        try:
            info = {}
            with open("/proc/meminfo") as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    info[key] = int(rest.split()[0])  # kB
            total, avail = info["MemTotal"], info.get("MemAvailable", info.get("MemFree", 0))
            return (total - avail) / 2**20, total / 2**20
        except (OSError, ValueError, KeyError, IndexError):
            return None, None

    def sample(self) -> HostFigures:
        used, total = self._memory()
        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):
            load = None
        return HostFigures(self._cpu(), used, total, load, os.cpu_count() or 1)
