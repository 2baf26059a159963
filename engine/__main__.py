"""python -m engine train RUN_DIR [--node-rank K --rdzv HOST:PORT] | complete RUN_DIR [--step N] | export RUN_DIR [--step N] --merged OUT | bench CONFIG --steps N [--json] | bench-modules [...]"""

from __future__ import annotations

import argparse
import sys

from runspec.argtypes import non_negative_int


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a run directory (created by cockpit)")
    t.add_argument("run_dir")
    t.add_argument("--node-rank", type=non_negative_int, default=None, metavar="K",
                   help="this machine's place in a [train] nodes > 1 run (default: $SLURM_NODEID, else 0); "
                        "node 0 owns the run directory")
    t.add_argument("--rdzv", default=None, metavar="HOST:PORT", help="node 0's rendezvous (overrides [train] rdzv)")
    t.add_argument("--own-log", action="store_true",
                   help="append this process's output to the run's engine.log (node 0) or engine.node<K>.log "
                        "(as under srun, where nothing else redirects it)")
    c = sub.add_parser("complete", help="serve completions from a run's checkpoint (JSON lines on stdin/stdout)")
    c.add_argument("run_dir")
    c.add_argument("--step", type=non_negative_int, default=None)
    e = sub.add_parser("export", help="write a plain checkpoint of a run (adapters merged)")
    e.add_argument("run_dir")
    e.add_argument("--step", type=non_negative_int, default=None)
    e.add_argument("--merged", required=True, metavar="OUT")
    from runspec import bench as options  # the options cockpit bench parses and passes on

    b = sub.add_parser("bench", help="time training steps of a config")
    b.add_argument("config")
    options.add(b, options.TRAIN)
    options.add(sub.add_parser("bench-modules", help="time every attention and ffn kind at one shape"), options.MODULES)
    cc = sub.add_parser("coordcheck", help="μP's coordinate check: layer sizes against width, SP and μP")
    cc.add_argument("config")
    options.add(cc, options.COORDCHECK)
    args = p.parse_args(argv)
    if args.cmd == "train":
        from runspec.run.stopflag import StopFlag

        stop = StopFlag()  # before torch is imported: a stop during start-up is honoured, not fatal
        threads = _thread_plan(args.run_dir)  # before torch too: OpenMP reads its wait policy when torch loads it
        from engine.train import node_rank_of, own_log, run

        if args.own_log:
            own_log(args.run_dir, node_rank_of(args.node_rank))
        return run(args.run_dir, stop, node_rank=args.node_rank, rdzv=args.rdzv, threads=threads)
    if args.cmd == "complete":
        from engine.complete import serve

        return serve(args.run_dir, args.step)
    if args.cmd == "export":
        from engine.export import main as export_main

        return export_main(args.run_dir, args.step, args.merged)
    from runspec.config.schema import ConfigError
    from runspec.data.corpus import CorpusError

    if args.cmd == "bench":
        from engine.bench import main as bench_main
        from runspec.data.tokenizers import TokenizerError

        return _one_line_errors(bench_main, args, ConfigError, CorpusError, TokenizerError)
    if args.cmd == "coordcheck":
        from engine.coordcheck import main as coord_main

        return _one_line_errors(coord_main, args, ConfigError, CorpusError, ValueError)
    if args.cmd == "bench-modules":
        from engine.bench_modules import main as modules_main

        return _one_line_errors(modules_main, args, ConfigError, ValueError)
    return 2


def _one_line_errors(main, args, *errors: type[Exception]) -> int:
    """A command's bad input (the given errors) as one line on stderr and exit status 2."""
    try:
        return main(args)
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _thread_plan(run_dir: str):
    """The CPU thread plan of a run (engine.cpu_threads), from its [train] threads; an
    unreadable config is the run's failure to report later, not here."""
    from engine.cpu_threads import plan
    from runspec.run.rundir import RunDir

    try:
        pinned = RunDir(run_dir).read_config().train.threads
    except Exception:  # whatever it is, run() reads the config again and records why it failed
        pinned = 0
    return plan(pinned)


if __name__ == "__main__":
    sys.exit(main())
