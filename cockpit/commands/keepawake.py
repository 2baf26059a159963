"""``cockpit keepawake``: keep the machine awake while a GPU is busy, without a worker."""

from __future__ import annotations

import json
import signal
import threading
import time

from cockpit.args import non_negative_float, percent
from cockpit.runs import runs_root


def register(sub) -> None:
    k = sub.add_parser("keepawake", help="keep the machine awake while a GPU is busy (standalone)")
    k.add_argument("--threshold", type=percent, default=10.0, help="a GPU above this utilization (%%) is busy")
    k.add_argument("--grace", type=non_negative_float, default=300.0, help="seconds to stay awake after the last busy reading")
    k.set_defaults(func=keepawake)


def keepawake(args) -> int:
    from cockpit.gpu import GpuMonitor
    from cockpit.keepawake import KeepAwake
    from cockpit.queue import control_dir
    from runspec.fs import atomic_write

    monitor, ka = GpuMonitor(), KeepAwake(args.threshold, args.grace)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    out = control_dir(runs_root(args.runs_dir)) / "keepawake.json"
    last = None
    try:
        while not stop.is_set():
            snap = monitor.snapshot()
            running = _any_running(runs_root(args.runs_dir))
            state = ka.update([g["util"] for g in snap["gpus"]] if snap["available"] else None, running)
            atomic_write(out, json.dumps(state))
            line = f"keep-awake {state['state']}" + (f" ({state['method'] or state['reason']})"
                                                     if state["method"] or state["reason"] else "")
            if line != last:
                print(time.strftime("%H:%M:%S"), line, flush=True)
                last = line
            stop.wait(1.0)
    finally:
        ka.close()
    return 0


def _any_running(runs_dir) -> bool:
    from cockpit.runs import read_states
    from runspec.run.rundir import RUNNING

    return any(x.status == RUNNING for x in read_states(runs_dir).values())
