"""The benchmarks' options, defined once. ``cockpit bench train|modules`` parses them (and says
what is wrong with one in a line), then starts the engine's ``python -m engine bench|bench-modules``
with the same options rebuilt by ``argv``; the engine adds them to its parser from here too, so the
two sides cannot drift apart."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from runspec.argtypes import non_negative_int, positive_float, positive_int


@dataclass(frozen=True)
class Option:
    flag: str  # "--d-model"
    type: Callable[[str], Any] | None  # None: a switch
    default: Any
    help: str = ""
    repeat: bool = False  # may be given several times (a list)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def add_to(self, p: argparse.ArgumentParser) -> None:
        if self.type is None:
            p.add_argument(self.flag, action="store_true", help=self.help or None)
        elif self.repeat:
            p.add_argument(self.flag, action="append", default=[], type=self.type, metavar="SECTION.KEY=VALUE",
                           help=self.help or None)
        else:
            p.add_argument(self.flag, type=self.type, default=self.default, help=self.help or None)

    def argv(self, value: Any) -> list[str]:
        if self.type is None:
            return [self.flag] if value else []
        if self.repeat:
            return [x for v in value or [] for x in (self.flag, str(v))]
        return [] if value is None else [self.flag, str(value)]


TRAIN = (
    Option("--steps", positive_int, 40, "timed steps"),
    Option("--warmup", non_negative_int, None, "untimed steps first (default: the engine's choice)"),
    Option("--json", None, False, "one JSON object instead of the table"),
    Option("--set", str, None, "override a config value, e.g. --set train.max_steps=200 (repeatable)", repeat=True),
)
MODULES = (
    Option("--d-model", positive_int, 256, "the width every kind is built at"),
    Option("--seq", positive_int, 256, "sequence length"),
    Option("--batch", positive_int, 16, "sequences per forward pass"),
    Option("--heads", positive_int, 8, "attention heads (even, for the kinds that pair them)"),
    Option("--device", str, "auto", "auto (cuda if present), cpu, cuda, cuda:N, mps"),
    Option("--reps", positive_int, 10, "at least reps x 20 ms of timed calls per row (median and IQR shown)"),
    Option("--max-seconds", positive_float, 2.0, "at most this long per row while the timings settle (IQR < 10%)"),
    Option("--warmup", non_negative_int, 3, "untimed repetitions first"),
    Option("--no-compile", None, False, "skip the eager vs torch.compile pair (slow to compile)"),
    Option("--groups", str, "attention,ffn,pair,context", "the tables to measure, comma-separated: attention, ffn, "
                                                          "pair (two ways to write the same thing), context"),
    Option("--json", None, False, "one JSON object instead of the table"),
)

COORDCHECK = (
    Option("--widths", str, "64,128,256,512", "the widths (d_model) to train, comma-separated"),
    Option("--steps", positive_int, 10, "training steps at each width"),
    Option("--parametrization", str, "both", "sp, mup or both"),
    Option("--out", str, None, "a folder for coordcheck.png and coordcheck.json"),
    Option("--json", None, False, "one JSON object instead of the table"),
    Option("--set", str, None, "override a config value, e.g. --set optim.lr=3e-3 (repeatable)", repeat=True),
)


def add(p: argparse.ArgumentParser, options: tuple[Option, ...]) -> None:
    for o in options:
        o.add_to(p)


def argv(args: argparse.Namespace, options: tuple[Option, ...]) -> list[str]:
    """The options of a parsed namespace as a command line again."""
    return [x for o in options for x in o.argv(getattr(args, o.dest))]
