"""``cockpit run CONFIG``: queue a run and watch it in the TUI, or (``--headless``, or without a
terminal) train it here with plain output."""

from __future__ import annotations

import sys

from cockpit.args import add_set, interactive, non_negative_int, positive_int, warn
from cockpit.seeds import parse_seeds


def register(sub) -> None:
    r = sub.add_parser("run", help="queue a run and watch it in the TUI (--headless: train it here, plain output)")
    r.add_argument("config", help="a run config (TOML), e.g. examples/quickstart.toml")
    r.add_argument("--name", help="run name (default: the config file's stem)")
    r.add_argument("--tag", action="append", default=[], help="a tag recorded in run.json (repeatable)")
    r.add_argument("--nproc", type=positive_int, default=None, metavar="N",
                   help="train on N devices of this machine under torchrun (same as --set train.gpus=N)")
    r.add_argument("--seeds", type=parse_seeds, metavar="N|S,S,...",
                   help="train the config once per seed, one after another: N seeds from its train.seed, or these; "
                        "named NAME-s<seed>, then their mean ± std (without --headless: queued for the worker)")
    r.add_argument("--force", action="store_true", help="start more ranks than this machine has GPUs or cores, or "
                                                         "device = cuda where NVML shows no GPU")
    r.add_argument("--nodes", type=positive_int, default=None, metavar="N",
                   help="train across N machines, [train] gpus ranks on each (same as --set train.nodes=N); run the "
                        "same command on every node with its --node-rank; the runs directory must be shared")
    r.add_argument("--node-rank", type=non_negative_int, default=0, metavar="K",
                   help="this machine's place among --nodes: 0 creates and owns the run, K > 0 joins it")
    r.add_argument("--rdzv", default=None, metavar="HOST:PORT",
                   help="node 0's address as the other nodes reach it, and a free port (same as --set train.rdzv=...)")
    add_set(r)
    r.set_defaults(func=run)


def run(args) -> int:
    from cockpit import nodes

    if args.nproc is not None:
        args.set = [*(args.set or []), f"train.gpus={args.nproc}"]
    args.set = [*(args.set or []), *nodes.overrides(args.nodes, args.rdzv)]
    from cockpit.headless import follow
    from cockpit.runs import check_config, check_ranks, claim, create_run, runs_root, start_engine
    from runspec.run.process import Proc
    from runspec.run.rundir import QUEUED, RunMeta

    if not args.headless:
        if interactive():
            return _run_in_tui(args)
        print("no terminal: training here with plain output (pass --headless to say so)", file=sys.stderr)
    cfg = check_config(args.config, args.set)
    check_ranks(cfg, args.force, "--nproc" if args.nproc is not None else "[train] gpus")
    if args.node_rank:
        return _join(args, cfg)
    nodes.check_leader(cfg, args.seeds is not None)
    if args.seeds is not None:
        return _run_seeds(args, cfg)
    rd = create_run(args.config, args.set, args.name, runs_root(args.runs_dir), RunMeta(tags=args.tag), now=True,
                    checked=cfg)
    print(f"created {rd.path}")
    if cfg.train.nodes > 1:
        print(f"node 0 of {cfg.train.nodes}: the run waits at {cfg.train.rdzv} until every node has joined; on each "
              f"other node run this command with --node-rank K (K = 1..{cfg.train.nodes - 1}) and --runs-dir "
              f"{rd.path.parent}")
    launch = claim(rd, Proc.me("cli"), expected=QUEUED)
    return follow(rd, start_engine(rd, launch), launch)


def _join(args, cfg) -> int:
    """Node K > 0: find the run node 0 created for this rendezvous, and run this node's ranks."""
    from cockpit import nodes
    from cockpit.runs import RunError, runs_root
    from runspec.config.schema import node_problem

    why = node_problem(cfg.train.nodes, args.node_rank, cfg.train.rdzv)
    if why:
        raise RunError(why)
    if args.seeds is not None:
        raise RunError("--seeds: node 0 decides what is trained; pass --seeds only there")
    runs_dir = runs_root(args.runs_dir)
    print(f"node {args.node_rank} of {cfg.train.nodes}: waiting for node 0's run in {runs_dir} "
          f"(rdzv {cfg.train.rdzv})", flush=True)
    rd = nodes.find_joinable(runs_dir, cfg, args.name)
    return nodes.join(rd, args.node_rank)


def _run_seeds(args, cfg) -> int:
    """One run per seed, trained here one after another (a stopped or killed one ends the series:
    that was a Ctrl-C), then the seeds side by side: mean ± standard deviation."""
    from pathlib import Path

    from cockpit import exit_codes
    from cockpit.headless import follow
    from cockpit.runs import check_config, claim, create_run, runs_root, start_engine
    from cockpit.seeds import SEED_KEY, seed_name
    from runspec.run.process import Proc
    from runspec.run.rundir import QUEUED, RunMeta

    runs_dir = runs_root(args.runs_dir)
    values = args.seeds.values(cfg.train.seed)
    done, worst = [], exit_codes.OK
    for i, seed in enumerate(values, 1):
        overrides = [*(args.set or []), f"{SEED_KEY}={seed}"]
        rd = create_run(args.config, overrides, seed_name(args.name or Path(args.config).stem, seed), runs_dir,
                        RunMeta(tags=args.tag), now=True, checked=check_config(args.config, overrides))
        print(f"created {rd.path} (seed {seed}: {i} of {len(values)})")
        launch = claim(rd, Proc.me("cli"), expected=QUEUED)
        code = follow(rd, start_engine(rd, launch), launch)
        worst = max(worst, code)
        done.append(rd)
        if code in (exit_codes.RUN_STOPPED, exit_codes.RUN_KILLED):
            left = len(values) - i
            if left:
                print(f"stopped: {left} seed(s) not started ({', '.join(map(str, values[i:]))})")
            break
    if len(done) > 1:
        from cockpit.analysis.compare import legend, plain, summarize, table

        summaries = [summarize(rd) for rd in done]
        print()
        print(plain(*table(summaries)))
        print(f"({legend(summaries, None)})")
    return worst


def _run_in_tui(args) -> int:
    """Queue the run, make sure a worker will train it, open its live view. The worker is
    its own process, so closing the TUI leaves training running."""
    from cockpit.queue import Queue
    from cockpit.runs import runs_root
    from cockpit.status import worker_status
    from cockpit.tui.app import open_tui
    from cockpit.worker import start_worker

    q = Queue(runs_root(args.runs_dir), warn=warn)
    rd = q.add([args.config], args.name, overrides=args.set, tags=args.tag, seeds=args.seeds)[0]
    if not worker_status(q)["alive"]:
        start_worker(q.runs_dir)
    return open_tui(args, "training", rd.id)
