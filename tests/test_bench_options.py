"""The benchmarks' options are defined once (runspec/bench.py): what cockpit parses is exactly
what it passes to the engine, and the engine's parser reads it back to the same values."""

from __future__ import annotations

import argparse

import pytest

from runspec import bench


def parse(options, argv):
    p = argparse.ArgumentParser()
    bench.add(p, options)
    return p.parse_args(argv)


@pytest.mark.parametrize("options, argv", [
    (bench.TRAIN, []),
    (bench.TRAIN, ["--steps", "5", "--warmup", "0", "--json", "--set", "train.seed=3", "--set", "optim.lr=1e-3"]),
    (bench.MODULES, []),
    (bench.MODULES, ["--d-model", "32", "--heads", "4", "--device", "cpu", "--no-compile", "--reps", "2"]),
])
def test_options_survive_the_trip_to_the_engine(options, argv):
    first = parse(options, argv)
    again = parse(options, bench.argv(first, options))
    assert vars(again) == vars(first)


def test_the_engine_parses_the_same_options():
    from engine.__main__ import main

    with pytest.raises(SystemExit) as e:  # the engine's parser rejects what cockpit's rejects, with the same rule
        main(["bench-modules", "--reps", "0"])
    assert e.value.code == 2


def test_bad_values_name_the_rule():
    with pytest.raises(argparse.ArgumentTypeError, match="must be at least 1"):
        bench.positive_int("0")
    with pytest.raises(argparse.ArgumentTypeError, match="'x' is not a whole number"):
        bench.non_negative_int("x")
