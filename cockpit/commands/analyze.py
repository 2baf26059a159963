"""``cockpit analyze scaling (--sweep NAME | RUN...) [--budget FLOPS | --hours H]``: a Chinchilla
fit over finished runs (parametric, and IsoFLOP parabolas when runs share budgets), with
intervals, the compute-optimal split for a budget, and plain words when the runs cannot support
it. ``cockpit analyze lr``: the best learning rate per size and how it moves with width."""

from __future__ import annotations

import sys

from cockpit.args import positive_float, positive_int


def register(sub) -> None:
    a = sub.add_parser("analyze", help="turn finished runs into answers: analyze scaling | lr")
    asub = a.add_subparsers(dest="analysis", required=True)
    s = asub.add_parser("scaling", help="fit L(N, D) = E + A/N^a + B/D^b; compute-optimal N and D for a budget")
    s.add_argument("runs", nargs="*", help="runs (ids, prefixes or directories); or --sweep")
    s.add_argument("--sweep", help="every run of this sweep")
    budget = s.add_mutually_exclusive_group()
    budget.add_argument("--budget", type=positive_float, help="compute budget in FLOPs (e.g. 1e18)")
    budget.add_argument("--hours", type=positive_float, help="compute budget in hours on this machine, at the runs' own "
                                                    "measured FLOP rate")
    s.add_argument("--params", choices=("total", "non_embedding"), default="non_embedding",
                   help="which parameter count is N (the optimum depends on it; default non_embedding)")
    s.add_argument("--bootstrap", type=positive_int, default=100, help="resamples for the intervals")
    s.add_argument("--out", help="write PNG plots to this directory")
    s.add_argument("--no-chart", action="store_true", help="no terminal charts")
    lr = asub.add_parser("lr", help="the best learning rate per model size, and how it moves with width")
    lr.add_argument("runs", nargs="*", help="runs (ids, prefixes or directories); or --sweep")
    lr.add_argument("--sweep", help="every run of this sweep")
    lr.add_argument("--out", help="write a PNG plot to this directory")
    lr.add_argument("--no-chart", action="store_true", help="no terminal chart")
    a.set_defaults(func=main)


def main(args) -> int:
    from cockpit.analysis import report
    from cockpit.runs import runs_root

    runs_dir = runs_root(args.runs_dir)
    if args.analysis == "lr":
        rep = report.lr(runs_dir, args.sweep, args.runs, out=args.out, charts=not args.no_chart)
    else:
        rep = report.scaling(runs_dir, args.sweep, args.runs, params=args.params, bootstrap=args.bootstrap,
                             budget=args.budget, hours=args.hours, out=args.out, charts=not args.no_chart)
    for note in rep.notes:
        print(note, file=sys.stderr)
    if rep.lines:
        print("\n".join(rep.lines))
    return rep.code


