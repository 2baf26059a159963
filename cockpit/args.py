"""What every command's arguments share: the parser class, value types, ``--set``, and how a
command reports an error or a warning (one line on stderr)."""

from __future__ import annotations

import argparse
import sys

from runspec.argtypes import non_negative_int, positive_int  # noqa: F401 (every command takes them from here)


class Parser(argparse.ArgumentParser):
    """Bad arguments are one line (what is wrong, and where the usage is), not a usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.max_steps=200 (repeatable)")


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text}: must be a finite number")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be a finite number >= 0")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be a number > 0")
    return value


def fail(msg: str, code: int = 2) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()
