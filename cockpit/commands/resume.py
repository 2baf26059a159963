"""``cockpit resume RUN``: continue a stopped, interrupted or partial run from its newest intact
checkpoint, here, with plain output."""

from __future__ import annotations

from cockpit.args import positive_int


def register(sub) -> None:
    s = sub.add_parser("resume", help="continue a stopped, interrupted or partial run from its checkpoint")
    s.add_argument("run", help="run id, unique id prefix, or run directory")
    s.add_argument("--max-steps", type=positive_int, default=None, help="new total step count")
    s.add_argument("--max-time", default=None, metavar="H:MM", help="time budget for this session")
    s.add_argument("--nproc", type=positive_int, default=None, metavar="N",
                   help="continue on N devices (the global batch changes with them; the data stream continues)")
    s.add_argument("--nodes", type=positive_int, default=None, metavar="N",
                   help="continue across N machines (1: on this one); the others join with cockpit --headless run "
                        "CONFIG --nodes N --node-rank K --rdzv HOST:PORT")
    s.add_argument("--rdzv", default=None, metavar="HOST:PORT", help="node 0's rendezvous for --nodes N > 1")
    s.add_argument("--force", action="store_true", help="start more ranks than this machine has GPUs or cores")
    s.set_defaults(func=resume)


def resume(args) -> int:
    from cockpit.headless import follow
    from cockpit.runs import RunError, check_ranks, claim, find_run, prepare_resume, runs_root, start_engine
    from runspec.run.process import Proc
    from runspec.run.rundir import COMPLETED, FAILED, INTERRUPTED, QUEUED, RUNNING, STOPPED, StateConflict

    rd = find_run(args.run, runs_root(args.runs_dir))
    # before anything of the run is rewritten
    check_ranks(rd.read_config(), args.force, "[train] gpus" if args.nproc is None else "--nproc", args.nproc)
    cfg = prepare_resume(rd, args.max_steps, args.max_time, args.nproc, args.nodes, args.rdzv)
    try:  # a running record whose engine is gone (prepare_resume checked) may be resumed too
        launch = claim(rd, Proc.me("cli"), expected=(QUEUED, STOPPED, INTERRUPTED, FAILED, COMPLETED, RUNNING))
    except StateConflict as e:
        raise RunError(str(e)) from None
    # which checkpoint is intact only the engine can tell (it loads them): it says, as the run starts
    print(f"resuming {rd.path} to step {cfg.train.max_steps} from its newest intact checkpoint")
    return follow(rd, start_engine(rd, launch), launch)
