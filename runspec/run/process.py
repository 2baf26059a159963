"""Which process is which: a pid plus the time it started, so a signal never reaches a
process that merely inherited a dead engine's pid. Torch-free; both halves use it.

On Linux the start time is field 22 of /proc/PID/stat (clock ticks since boot) prefixed with
the boot id, so even a pid and tick count repeated after a reboot do not match: the exact
figure, and the token format every state.json already holds (a run started before an upgrade
is still recognised as alive). Elsewhere psutil's creation time, and psutil for children.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from typing import Any

_boot_id: str | None = None

# The machine a process runs on, as recorded beside its pid: a runs directory shared between
# machines (NFS) holds pids that mean nothing here. COCKPIT_HOST overrides the host name (two
# "machines" on one host in the tests; a host renamed under a run that must be taken back).
HOST_ENV = "COCKPIT_HOST"


def this_host() -> str:
    return os.environ.get(HOST_ENV) or socket.gethostname()


def _linux_boot_id() -> str:
    global _boot_id
    if _boot_id is None:
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                _boot_id = f.read().strip()[:8]
        except OSError:
            _boot_id = ""
    return _boot_id


def start_token(pid: int | None) -> str | None:
    """When ``pid`` started, as an opaque string; None when there is no such process."""
    if not pid or pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        fields = stat[stat.rindex(b")") + 2:].split()
        if fields[0] == b"Z":  # a zombie has exited; it only waits to be reaped
            return None
        return f"{_linux_boot_id()}:{int(fields[19])}"
    except FileNotFoundError:
        return None
    except (OSError, ValueError, IndexError):
        pass
    import psutil  # no /proc (macOS, BSD, Windows)

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"ct:{proc.create_time():.3f}"
    except (psutil.Error, OSError):
        return None


def pid_exists(pid: int | None) -> bool:
    """The pid names a live (not zombie) process, whoever it is."""
    return start_token(pid) is not None


@dataclass(frozen=True)
class Proc:
    """A process as recorded in a file: pid and start token (and what it is, for people)."""

    pid: int
    start: str
    kind: str = ""  # "worker", "cli", "engine", ...

    @classmethod
    def me(cls, kind: str = "") -> "Proc":
        pid = os.getpid()
        return cls(pid, start_token(pid) or "", kind)

    @classmethod
    def of(cls, pid: int, kind: str = "") -> "Proc | None":
        token = start_token(pid)
        return cls(pid, token, kind) if token else None

    @classmethod
    def from_dict(cls, d: Any) -> "Proc | None":
        if not isinstance(d, dict) or not isinstance(d.get("pid"), int):
            return None
        return cls(d["pid"], str(d.get("start", "")), str(d.get("kind", "")))

    def alive(self) -> bool:
        """The same process is still running: its pid exists and started when recorded."""
        return bool(self.start) and start_token(self.pid) == self.start

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.kind or 'process'} {self.pid}"


def children(pid: int) -> list[int]:
    """The live (not zombie) child processes of ``pid``: a launcher's ranks."""
    import psutil

    try:
        kids = psutil.Process(pid).children()
    except (psutil.Error, OSError):
        return []
    out = []
    for kid in kids:
        try:
            if kid.status() != psutil.STATUS_ZOMBIE:
                out.append(kid.pid)
        except (psutil.Error, OSError):
            continue
    return sorted(out)
