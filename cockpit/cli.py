"""The ``cockpit`` command: the top-level options, each subcommand from ``cockpit/commands/``,
and the one place where an error becomes one line and an exit code. Never imports torch:
training and benchmarks run in engine subprocesses, so the CLI starts fast and works on a
machine that is only watching."""

from __future__ import annotations

import argparse
import sys

from cockpit.args import Parser, fail, interactive


def build_parser() -> argparse.ArgumentParser:
    from cockpit.commands import register_all

    p = Parser(prog="cockpit", description="Train small language models and watch them.")
    p.add_argument("--headless", action="store_true", help="no TUI: plain terminal output (for SSH, scripts)")
    p.add_argument("--runs-dir", default=None, help="where run directories live (default: ./runs or $COCKPIT_RUNS_DIR)")
    p.add_argument("--corpora-dir", default=None, help="the TUI's Corpora tab (default: ./corpora or $COCKPIT_CORPORA_DIR)")
    register_all(p.add_subparsers(dest="cmd", parser_class=Parser))
    return p


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
    parser = build_parser()
    args = parser.parse_args(argv)
    from cockpit.runs import RunError
    from runspec.config.schema import ConfigError
    from runspec.data.corpus import CorpusError
    from runspec.data.tokenizers import TokenizerError
    from runspec.fs import LockHeld
    from runspec.run.rundir import StateError

    if args.cmd is None:
        if interactive() and not args.headless:
            from cockpit.tui.app import open_tui

            return open_tui(args)
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (ConfigError, RunError, CorpusError, StateError, TokenizerError, LockHeld) as e:
        return fail(str(e))
    except BrokenPipeError:
        raise
    except OSError as e:  # disk full, permissions, a path that is a file: one line, not a traceback
        where = f" ({e.filename})" if e.filename else ""
        return fail(f"{e.strerror or e}{where}", 1)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
