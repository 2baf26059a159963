"""What every command's arguments share: the parser class, value types, ``--set``, and how a
command reports an error or a warning (one line on stderr)."""

from __future__ import annotations

import argparse
import sys

from runspec.argtypes import (  # noqa: F401 (every command takes them from here)
    finite_float,
    non_negative_float,
    non_negative_int,
    percent,
    positive_float,
    positive_int,
    seed,
)


class Parser(argparse.ArgumentParser):
    """Bad arguments are one line (what is wrong, and where the usage is), not a usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.max_steps=200 (repeatable)")


def fail(msg: str, code: int = 2) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()
