"""``cockpit bench train CONFIG`` and ``cockpit bench modules``: the engine's benchmarks, run as
engine subprocesses: their options are defined once, in runspec/bench.py, parsed here and passed on."""

from __future__ import annotations

import re
import subprocess
import sys

from cockpit.args import fail
from runspec import bench as options


def register(sub) -> None:
    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench_cmd", required=True)
    bt = bsub.add_parser("train", help="training throughput of a config (after warm-up, without start-up)")
    bt.add_argument("config", help="a run config (TOML); its model and batch are timed, nothing is written")
    options.add(bt, options.TRAIN)
    bt.set_defaults(func=train)
    bm = bsub.add_parser("modules", help="forward+backward and decode time, memory and size of every attention "
                                         "and ffn kind at one shape, and pairs of ways to write the same thing")
    options.add(bm, options.MODULES)
    bm.set_defaults(func=modules)
    bc = bsub.add_parser("coordcheck", help="μP's coordinate check: train a few steps at several widths and show "
                                            "each layer's activation size against width, SP and μP")
    bc.add_argument("config", help="a run config (TOML): its model at each width, its data and learning rate")
    options.add(bc, options.COORDCHECK)
    bc.set_defaults(func=coordcheck)


def train(args) -> int:
    return subprocess.call([sys.executable, "-m", "engine", "bench", args.config, *options.argv(args, options.TRAIN)])


def modules(args) -> int:
    if args.d_model % args.heads:
        return fail(f"--d-model {args.d_model} is not divisible by --heads {args.heads}; choose sizes that divide")
    if args.heads % 2 or (args.d_model // args.heads) % 4:
        return fail(f"--heads {args.heads}: diff and dint pair heads and RoPE splits each head, so --heads must be "
                    f"even and d_model / heads ({args.d_model // args.heads}) a multiple of 4")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", args.device):
        return fail(f"--device {args.device!r}: use auto, cpu, cuda, cuda:N or mps")
    return subprocess.call([sys.executable, "-m", "engine", "bench-modules", *options.argv(args, options.MODULES)])


def coordcheck(args) -> int:
    try:
        widths = [int(w) for w in args.widths.split(",")]
    except ValueError:
        return fail(f"--widths {args.widths!r}: whole numbers separated by commas, e.g. 64,128,256,512")
    if len(set(widths)) < 2 or min(widths) < 1:
        return fail(f"--widths {args.widths!r}: at least two different positive widths")
    if args.parametrization not in ("sp", "mup", "both"):
        return fail(f"--parametrization {args.parametrization!r}: use sp, mup or both")
    return subprocess.call([sys.executable, "-m", "engine", "coordcheck", args.config,
                            *options.argv(args, options.COORDCHECK)])
