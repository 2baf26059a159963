"""``cockpit worker``: start queued runs one after another (the queue's only consumer)."""

from __future__ import annotations

from cockpit.args import fail, non_negative_float, percent, positive_int
from cockpit.runs import runs_root


def register(sub) -> None:
    w = sub.add_parser("worker", help="start queued runs one after another (keep it alive with tmux/nohup/systemd)")
    w.add_argument("--gpus", default=None, help="comma-separated GPU indices: one run per GPU")
    w.add_argument("--once", action="store_true", help="drain the queue, then exit")
    w.add_argument("--slots", type=positive_int, default=1,
                   help="runs each device trains at once (CPU runs split the cores between them); a run takes "
                        "[train] slots of them")
    w.add_argument("--threshold", type=percent, default=10.0, help="keep-awake: GPU utilization %% that counts as busy")
    w.add_argument("--grace", type=non_negative_float, default=300.0, help="keep-awake: seconds awake after the GPU goes idle")
    w.set_defaults(func=worker)


def worker(args) -> int:
    from cockpit.worker import Worker, WorkerBusy

    gpus = None
    if args.gpus:
        try:
            gpus = [int(x) for x in args.gpus.split(",") if x.strip()]
        except ValueError:
            gpus = []
        if not gpus or any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
            return fail(f"--gpus {args.gpus}: give distinct GPU indices like 0,1")
    try:
        worker = Worker(runs_root(args.runs_dir), gpus, args.once, args.threshold, args.grace,
                        log=lambda m: print(m, flush=True), slots=args.slots)
        return worker.run()
    except WorkerBusy as e:
        return fail(str(e))
