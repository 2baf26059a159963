"""``cockpit bench train CONFIG`` and ``cockpit bench modules``: the engine's benchmarks, run as
engine subprocesses (the flags are defined here once and passed on)."""

from __future__ import annotations

import re
import subprocess
import sys

from cockpit.args import add_set, fail, non_negative_int, positive_int


def register(sub) -> None:
    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench_cmd", required=True)
    bt = bsub.add_parser("train", help="training throughput of a config (after warm-up, without start-up)")
    bt.add_argument("config")
    bt.add_argument("--steps", type=positive_int, default=40)
    bt.add_argument("--warmup", type=non_negative_int, default=None)
    bt.add_argument("--json", action="store_true")
    add_set(bt)
    bt.set_defaults(func=train)
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
    bm.set_defaults(func=modules)


def train(args) -> int:
    cmd = [sys.executable, "-m", "engine", "bench", args.config, "--steps", str(args.steps)]
    if args.warmup is not None:
        cmd += ["--warmup", str(args.warmup)]
    if args.json:
        cmd.append("--json")
    for s in args.set:
        cmd += ["--set", s]
    return subprocess.call(cmd)


def modules(args) -> int:
    if args.d_model % args.heads:
        return fail(f"--d-model {args.d_model} is not divisible by --heads {args.heads}; choose sizes that divide")
    if args.heads % 2 or (args.d_model // args.heads) % 4:
        return fail(f"--heads {args.heads}: diff and dint pair heads and RoPE splits each head, so --heads must be "
                    f"even and d_model / heads ({args.d_model // args.heads}) a multiple of 4")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", args.device):
        return fail(f"--device {args.device!r}: use auto, cpu, cuda, cuda:N or mps")
    cmd = [sys.executable, "-m", "engine", "bench-modules", "--d-model", str(args.d_model), "--seq", str(args.seq),
           "--batch", str(args.batch), "--heads", str(args.heads), "--device", args.device,
           "--reps", str(args.reps), "--warmup", str(args.warmup)]
    cmd += ["--no-compile"] * args.no_compile + ["--json"] * args.json
    return subprocess.call(cmd)
