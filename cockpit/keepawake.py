"""Keep the machine awake while the GPU works, and let it sleep when it is idle.

Policy: busy while any GPU's utilization is above the threshold (or, without NVML, while a
run is running); stay awake for a grace period after the last busy reading. The inhibitor is
wakepy's ``keep.running``; where wakepy finds no method on Linux and ``systemd-inhibit``
exists, that is tried. When neither works the state is "unavailable" with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass


@dataclass
class Policy:
    threshold: float = 10.0  # percent utilization
    grace: float = 300.0  # seconds awake after the last busy reading
    last_busy: float | None = None

    def wants_awake(self, utils: list[float] | None, run_running: bool, now: float) -> bool:
        busy = any(u > self.threshold for u in utils) if utils else run_running  # no NVML / no GPU: runs
        if busy:
            self.last_busy = now
            return True
        return self.last_busy is not None and now - self.last_busy < self.grace


class Inhibitor:
    """Holds a sleep inhibitor; ``acquire`` returns (active, method, reason)."""

    def __init__(self) -> None:
        self._mode = None
        self._proc: subprocess.Popen | None = None
        self.method = ""

    def acquire(self) -> tuple[bool, str, str]:
        if self._mode is not None or self._proc is not None:
            return True, self.method, ""
        reasons = []
        try:
            from wakepy import keep

            mode = keep.running(on_fail="pass")
            mode.__enter__()
            if mode.active:
                self._mode, self.method = mode, f"wakepy {mode.active_method}"
                return True, self.method, ""
            mode.__exit__(None, None, None)
            reasons.append(_wakepy_reason())
        except Exception as e:
            reasons.append(f"wakepy: {type(e).__name__}: {e}".splitlines()[0])
        if sys.platform.startswith("linux") and shutil.which("systemd-inhibit"):
            proc = subprocess.Popen(["systemd-inhibit", "--what=sleep:idle", "--who=cockpit",
                                     "--why=training on the GPU", "--mode=block", "sleep", "infinity"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                proc.wait(timeout=0.5)  # still running after half a second: the inhibitor holds
                err = (proc.stderr.read() or "").strip().splitlines()
                reasons.append(f"systemd-inhibit: {err[0] if err else f'exit {proc.returncode}'}")
            except subprocess.TimeoutExpired:
                self._proc, self.method = proc, "systemd-inhibit"
                return True, self.method, ""
        return False, "", "; ".join(reasons)

    def release(self) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()
            self._proc = None
        self.method = ""


def _wakepy_reason() -> str:
    if sys.platform.startswith("linux") and not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return "wakepy: no session D-Bus (DBUS_SESSION_BUS_ADDRESS is not set)"
    return "wakepy: no method worked on this system"


class KeepAwake:
    """Policy + inhibitor, with a state record for the TUI and ``cockpit status``."""

    def __init__(self, threshold: float = 10.0, grace: float = 300.0, inhibitor: Inhibitor | None = None):
        self.policy = Policy(threshold, grace)
        self.inhibitor = inhibitor or Inhibitor()
        self.state = {"state": "idle", "method": "", "reason": "", "since": time.time(), "threshold": threshold,
                      "grace_s": grace}

    def update(self, utils: list[float] | None, run_running: bool, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        if self.policy.wants_awake(utils, run_running, now):
            active, method, reason = self.inhibitor.acquire()
            new = ("active", method, "") if active else ("unavailable", "", reason)
        else:
            self.inhibitor.release()
            new = ("idle", "", "")
        if (self.state["state"], self.state["method"], self.state["reason"]) != new:
            self.state.update(state=new[0], method=new[1], reason=new[2], since=now)
        return self.state

    def close(self) -> None:
        self.inhibitor.release()
