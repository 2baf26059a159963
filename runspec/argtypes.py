"""Command-line value types both halves use (cockpit's commands, the engine's entry point):
a bad value is one argparse error naming it and the rule. Every number a command takes goes
through one of these: finite, in range, and the range stated in the message."""

from __future__ import annotations

import argparse

MAX_SEED = 2**63 - 1  # torch's generators take 64-bit seeds


def _whole(text: str, minimum: int, rule: str, maximum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise argparse.ArgumentTypeError(f"{value}: must be {rule}")
    return value


def positive_int(text: str) -> int:
    return _whole(text, 1, "at least 1")


def non_negative_int(text: str) -> int:
    return _whole(text, 0, "0 or more")


def seed(text: str) -> int:
    return _whole(text, 0, f"between 0 and {MAX_SEED}", MAX_SEED)


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
        raise argparse.ArgumentTypeError(f"{text}: must be a finite number > 0")
    return value


def percent(text: str) -> float:
    value = finite_float(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text}: must be a percentage from 0 to 100")
    return value
