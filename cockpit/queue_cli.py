"""CLI handlers: ``cockpit queue ...``, ``cockpit worker``, ``cockpit status``, ``cockpit keepawake``."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time

from cockpit.runs import runs_root


def add_parsers(sub) -> None:
    q = sub.add_parser("queue", help="the run queue: add, ls, mv, stop, retry, rm, pause, resume")
    qs = q.add_subparsers(dest="queue_cmd", required=True)
    a = qs.add_parser("add", help="validate configs and queue them")
    a.add_argument("configs", nargs="+")
    a.add_argument("--name")
    a.add_argument("--front", action="store_true")
    a.add_argument("--after", metavar="RUN", help="place them right after this queued run")
    a.add_argument("--depends-on", action="append", default=[], metavar="RUN",
                   help="start only once RUN has completed (repeatable; recorded in run.json)")
    a.add_argument("--tag", action="append", default=[], help="a tag recorded in run.json (repeatable)")
    a.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ls = qs.add_parser("ls", help="queued runs in order")
    ls.add_argument("--json", action="store_true")
    mv = qs.add_parser("mv", help="move a queued run")
    mv.add_argument("run")
    g = mv.add_mutually_exclusive_group(required=True)
    g.add_argument("--to", type=int, metavar="POSITION")
    g.add_argument("--up", action="store_true")
    g.add_argument("--down", action="store_true")
    for name, text in (("stop", "stop a running run cleanly (checkpoint, stopped) or take a queued one out"),
                       ("retry", "queue a failed, stopped or interrupted run again; it resumes from its checkpoint")):
        p = qs.add_parser(name, help=text)
        p.add_argument("run")
    rm = qs.add_parser("rm", help="remove a queued run (--force for a finished one: deletes its directory)")
    rm.add_argument("run")
    rm.add_argument("--force", action="store_true")
    qs.add_parser("pause", help="the worker starts no new runs (the running one finishes)")
    qs.add_parser("resume", help="the worker starts runs again")

    w = sub.add_parser("worker", help="start queued runs one after another (keep it alive with tmux/nohup/systemd)")
    w.add_argument("--gpus", default=None, help="comma-separated GPU indices: one run per GPU")
    w.add_argument("--once", action="store_true", help="drain the queue, then exit")
    w.add_argument("--threshold", type=float, default=10.0, help="keep-awake: GPU utilization %% that counts as busy")
    w.add_argument("--grace", type=float, default=300.0, help="keep-awake: seconds awake after the GPU goes idle")
    s = sub.add_parser("status", help="worker, queue, running runs, GPUs and keep-awake")
    s.add_argument("--json", action="store_true")
    k = sub.add_parser("keepawake", help="keep the machine awake while a GPU is busy (standalone)")
    k.add_argument("--threshold", type=float, default=10.0)
    k.add_argument("--grace", type=float, default=300.0)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def cmd_queue(args) -> int:
    from cockpit.queue import Queue

    q = Queue(runs_root(args.runs_dir), warn=warn)
    c = args.queue_cmd
    if c == "add":
        for rd in q.add(args.configs, args.name, args.front, args.after, args.set, tags=args.tag,
                        depends_on=args.depends_on):
            order = q.order
            where = f"at position {order.index(rd.id) + 1}" if rd.id in order else "(it has already started)"
            print(f"queued {rd.id} {where}")
    elif c == "ls":
        from cockpit.status import collect
        from cockpit.worker import device_label

        st = collect(q.runs_dir, warn=warn)
        if args.json:
            print(json.dumps({k: st[k] for k in ("paused", "queue", "running")}, indent=1))
        else:
            print("queue is PAUSED" if st["paused"] else "queue", f"({len(st['queue'])} queued)")
            for r in st["running"]:
                where = f"  [{device_label(r['slot'].split(','))}]" if r.get("slot") else ""
                print(f"  running  {r['id']}  {r['model']}  step {r['step']}/{r['max_steps']}{where}")
            for item in st["queue"]:
                waiting = f"  (waiting for {item['waiting_for']})" if item.get("waiting_for") else ""
                print(f"  {item['position']:>7}  {item['id']}  {item['model']}{waiting}")
    elif c == "mv":
        print(f"{args.run} is now at position {q.move(args.run, args.to, args.up, args.down)}")
    elif c == "stop":
        print(q.stop(args.run))
    elif c == "retry":
        rd = q.retry(args.run)
        print(f"queued {rd.id} again at position {q.order.index(rd.id) + 1}; it resumes from its last checkpoint")
    elif c == "rm":
        q.remove(args.run, args.force)
        print(f"removed {args.run}")
    elif c in ("pause", "resume"):
        q.set_paused(c == "pause")
        print("paused: the worker starts no new runs" if c == "pause" else "resumed")
    return 0


def cmd_worker(args) -> int:
    from cockpit.worker import Worker, WorkerBusy

    gpus = None
    if args.gpus:
        try:
            gpus = [int(x) for x in args.gpus.split(",") if x.strip()]
        except ValueError:
            gpus = []
        if not gpus or any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
            print(f"error: --gpus {args.gpus}: give distinct GPU indices like 0,1", file=sys.stderr)
            return 2
    worker = Worker(runs_root(args.runs_dir), gpus, args.once, args.threshold, args.grace,
                    log=lambda m: print(m, flush=True))
    try:
        return worker.run()
    except WorkerBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def cmd_status(args) -> int:
    from cockpit.status import collect, render

    st = collect(runs_root(args.runs_dir), warn=warn)
    print(json.dumps(st, indent=1) if args.json else render(st))
    return 0


def cmd_keepawake(args) -> int:
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
