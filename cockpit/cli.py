"""The ``cockpit`` command. Never imports torch: training and benchmarks run in engine
subprocesses, so the CLI starts fast and works on a machine that is only watching."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from runspec.config.schema import ConfigError


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.max_steps=200 (repeatable)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: must be 0 or more")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text}: must be a finite number >= 0")
    return value


class Parser(argparse.ArgumentParser):
    """Bad arguments are one line (what is wrong, and where the usage is), not a usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="cockpit", description="Train small language models and watch them.")
    p.add_argument("--headless", action="store_true", help="no TUI: plain terminal output (for SSH, scripts)")
    p.add_argument("--runs-dir", default=None, help="where run directories live (default: ./runs or $COCKPIT_RUNS_DIR)")
    p.add_argument("--corpora-dir", default=None, help="the TUI's Corpora tab (default: ./corpora or $COCKPIT_CORPORA_DIR)")
    sub = p.add_subparsers(dest="cmd", parser_class=Parser)

    r = sub.add_parser("run", help="queue a run and watch it in the TUI (--headless: train it here, plain output)")
    r.add_argument("config")
    r.add_argument("--name", help="run name (default: the config file's stem)")
    r.add_argument("--tag", action="append", default=[], help="a tag recorded in run.json (repeatable)")
    r.add_argument("--nproc", type=positive_int, default=None, metavar="N",
                   help="train on N devices of this machine under torchrun (same as --set train.gpus=N)")
    _add_set(r)

    s = sub.add_parser("resume", help="continue a stopped, interrupted or partial run from its checkpoint")
    s.add_argument("run", help="run id, unique id prefix, or run directory")
    s.add_argument("--max-steps", type=int, default=None, help="new total step count")
    s.add_argument("--max-time", default=None, metavar="H:MM", help="time budget for this session")
    s.add_argument("--nproc", type=positive_int, default=None, metavar="N",
                   help="continue on N devices (the global batch changes with them; the data stream continues)")

    c = sub.add_parser("complete", help="complete prompts with a run's model: ### text, @@@ conviction per token")
    c.add_argument("run", help="run id, unique id prefix, run directory, or an exported .pt file")
    c.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    c.add_argument("-t", "--temperature", type=non_negative_float, default=0.8, help="0: greedy")
    c.add_argument("-k", "--top-k", type=non_negative_int, default=50, help="0: no limit")
    c.add_argument("-m", "--max-tokens", type=positive_int, default=256)
    c.add_argument("--seed", type=int, default=None, help="same seed, same completion")
    c.add_argument("--prompt", default=None, help="run once on this prompt instead of reading prompts")
    c.add_argument("--mode", choices=("text", "conviction"), default="text", help="with --prompt")
    c.add_argument("--json", action="store_true", help="one JSON object per token: token, id, conviction, prob")

    x = sub.add_parser("export", help="write a plain checkpoint of a run with its LoRA adapters merged "
                                      "(for cockpit complete and [init] from)")
    x.add_argument("run", help="run id, unique id prefix, or run directory")
    x.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    x.add_argument("--merged", required=True, metavar="OUT", help="the .pt file to write (must not exist)")

    from cockpit.analyze_cli import add_parser as add_analyze

    add_analyze(sub)
    from cockpit.compare_cli import add_parser as add_compare

    add_compare(sub)
    from cockpit.findings import add_parser as add_findings

    add_findings(sub)
    from cockpit.sweep_cli import add_parser as add_sweep

    add_sweep(sub)
    from cockpit.serve.main import add_parser as add_serve

    add_serve(sub)
    from cockpit.corpora_cli import add_parser as add_corpora

    add_corpora(sub)
    from cockpit.queue_cli import add_parsers as add_queue

    add_queue(sub)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench_cmd", required=True)
    bt = bsub.add_parser("train", help="training throughput of a config (after warm-up, without start-up)")
    bt.add_argument("config")
    bt.add_argument("--steps", type=positive_int, default=40)
    bt.add_argument("--warmup", type=non_negative_int, default=None)
    bt.add_argument("--json", action="store_true")
    _add_set(bt)
    bm = bsub.add_parser("modules", help="forward+backward and decode time, memory and size of every attention "
                                         "and ffn kind at one shape, and pairs of ways to write the same thing")
    bm.add_argument("--d-model", type=positive_int, default=256)
    bm.add_argument("--seq", type=positive_int, default=256)
    bm.add_argument("--batch", type=positive_int, default=16)
    bm.add_argument("--heads", type=positive_int, default=8)
    bm.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:N, mps")
    bm.add_argument("--reps", type=positive_int, default=10, help="timed repetitions (the median is shown)")
    bm.add_argument("--warmup", type=non_negative_int, default=3)
    bm.add_argument("--no-compile", action="store_true", help="skip the eager vs torch.compile pair (slow to compile)")
    bm.add_argument("--json", action="store_true")
    return p


def _fail(msg: str, code: int = 2) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def cmd_tui(args, tab: str = "queue", run: str | None = None) -> int:
    from cockpit.corpora_cli import corpora_root
    from cockpit.runs import runs_root
    from cockpit.tui.app import run_tui

    return run_tui(runs_root(args.runs_dir), corpora_root(args.corpora_dir), tab, run)


def cmd_run(args) -> int:
    if args.nproc is not None:
        args.set = [*(args.set or []), f"train.gpus={args.nproc}"]
    from cockpit.headless import follow
    from cockpit.runs import claim, create_run, runs_root, start_engine
    from runspec.run.process import Proc
    from runspec.run.rundir import QUEUED, RunMeta

    if not args.headless:
        if _interactive():
            return _run_in_tui(args)
        print("no terminal: training here with plain output (pass --headless to say so)", file=sys.stderr)
    rd = create_run(args.config, args.set, args.name, runs_root(args.runs_dir), RunMeta(tags=args.tag), now=True)
    print(f"created {rd.path}")
    launch = claim(rd, Proc.me("cli"), expected=QUEUED)
    return follow(rd, start_engine(rd, launch), launch)


def _run_in_tui(args) -> int:
    """Queue the run, make sure a worker will train it, open its live view. The worker is
    its own process, so closing the TUI leaves training running."""
    from cockpit.queue import Queue
    from cockpit.runs import runs_root
    from cockpit.status import worker_status
    from cockpit.tui.runs_table import start_worker

    q = Queue(runs_root(args.runs_dir), warn=_warn)
    rd = q.add([args.config], args.name, overrides=args.set, tags=args.tag)[0]
    if not worker_status(q)["alive"]:
        start_worker(q.runs_dir)
    return cmd_tui(args, "training", rd.id)


def cmd_resume(args) -> int:
    from cockpit.headless import follow
    from cockpit.runs import RunError, claim, find_run, prepare_resume, runs_root, start_engine
    from runspec.run.process import Proc
    from runspec.run.rundir import COMPLETED, FAILED, INTERRUPTED, QUEUED, RUNNING, STOPPED, StateConflict

    rd = find_run(args.run, runs_root(args.runs_dir))
    cfg = prepare_resume(rd, args.max_steps, args.max_time, args.nproc)
    try:  # a running record whose engine is gone (prepare_resume checked) may be resumed too
        launch = claim(rd, Proc.me("cli"), expected=(QUEUED, STOPPED, INTERRUPTED, FAILED, COMPLETED, RUNNING))
    except StateConflict as e:
        raise RunError(str(e)) from None
    print(f"resuming {rd.path} from step {(rd.checkpoint_steps() or [0])[-1]} (the newest intact checkpoint) "
          f"to {cfg.train.max_steps}")
    return follow(rd, start_engine(rd, launch), launch)


def cmd_export(args) -> int:
    """The engine writes it (torch); the CLI resolves the run and passes the exit code on."""
    from cockpit.runs import find_run, runs_root

    rd = find_run(args.run, runs_root(args.runs_dir))
    cmd = [sys.executable, "-m", "engine", "export", str(rd.path), "--merged", str(Path(args.merged).resolve())]
    if args.step is not None:
        cmd += ["--step", str(args.step)]
    return subprocess.run(cmd).returncode


def cmd_bench(args) -> int:
    if args.bench_cmd == "modules":
        return bench_modules(args)
    cmd = [sys.executable, "-m", "engine", "bench", args.config, "--steps", str(args.steps)]
    if args.warmup is not None:
        cmd += ["--warmup", str(args.warmup)]
    if args.json:
        cmd.append("--json")
    for s in args.set:
        cmd += ["--set", s]
    return subprocess.call(cmd)


def bench_modules(args) -> int:
    if args.d_model % args.heads:
        return _fail(f"--d-model {args.d_model} is not divisible by --heads {args.heads}; choose sizes that divide")
    if args.heads % 2 or (args.d_model // args.heads) % 4:
        return _fail(f"--heads {args.heads}: diff and dint pair heads and RoPE splits each head, so --heads must be "
                     f"even and d_model / heads ({args.d_model // args.heads}) a multiple of 4")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", args.device):
        return _fail(f"--device {args.device!r}: use auto, cpu, cuda, cuda:N or mps")
    cmd = [sys.executable, "-m", "engine", "bench-modules", "--d-model", str(args.d_model), "--seq", str(args.seq),
           "--batch", str(args.batch), "--heads", str(args.heads), "--device", args.device,
           "--reps", str(args.reps), "--warmup", str(args.warmup)]
    cmd += ["--no-compile"] * args.no_compile + ["--json"] * args.json
    return subprocess.call(cmd)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader went away (cockpit status | head): leave quietly, and keep Python's
        # shutdown from complaining about the flush of a closed stdout
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from cockpit import queue_cli
    from cockpit.complete_cli import main as cmd_complete
    from cockpit.corpora_cli import main as cmd_corpora
    from cockpit.runs import RunError
    from runspec.data.corpus import CorpusError
    from runspec.data.tokenizers import TokenizerError
    from runspec.run.rundir import StateError

    def cmd_serve(a) -> int:
        from cockpit.serve.main import main as serve_main

        return serve_main(a)

    def cmd_sweep(a) -> int:
        from cockpit.sweep_cli import main as sweep_main

        return sweep_main(a)

    def cmd_analyze(a) -> int:
        from cockpit.analyze_cli import main as analyze_main

        return analyze_main(a)

    def cmd_compare(a) -> int:
        from cockpit.compare_cli import main as compare_main

        return compare_main(a)

    def cmd_findings(a) -> int:
        from cockpit.findings import main as findings_main

        return findings_main(a)

    handlers = {"compare": cmd_compare, "findings": cmd_findings, "serve": cmd_serve, "sweep": cmd_sweep, "analyze": cmd_analyze, "run": cmd_run, "resume": cmd_resume, "bench": cmd_bench, "complete": cmd_complete, "export": cmd_export,
                "corpora": cmd_corpora, "queue": queue_cli.cmd_queue, "worker": queue_cli.cmd_worker,
                "status": queue_cli.cmd_status, "keepawake": queue_cli.cmd_keepawake}
    if args.cmd is None:
        if _interactive() and not args.headless:
            return cmd_tui(args)
        build_parser().print_help()
        return 0
    try:
        return handlers[args.cmd](args)
    except (ConfigError, RunError, CorpusError, StateError, TokenizerError) as e:
        return _fail(str(e))
    except BrokenPipeError:
        raise
    except OSError as e:  # disk full, permissions, a path that is a file: one line, not a traceback
        where = f" ({e.filename})" if e.filename else ""
        return _fail(f"{e.strerror or e}{where}", 1)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
