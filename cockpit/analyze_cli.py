"""``cockpit analyze scaling (--sweep NAME | RUN...) [--budget FLOPS | --hours H]``: a Chinchilla
fit over finished runs, with intervals, the compute-optimal split for a budget, and plain
words when the runs cannot support it."""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

from cockpit.sweep_cli import human


def add_parser(sub) -> None:
    from cockpit.cli import positive_int

    a = sub.add_parser("analyze", help="turn finished runs into answers: analyze scaling")
    asub = a.add_subparsers(dest="analysis", required=True)
    s = asub.add_parser("scaling", help="fit L(N, D) = E + A/N^a + B/D^b; compute-optimal N and D for a budget")
    s.add_argument("runs", nargs="*", help="runs (ids, prefixes or directories); or --sweep")
    s.add_argument("--sweep", help="every run of this sweep")
    budget = s.add_mutually_exclusive_group()
    budget.add_argument("--budget", type=float, help="compute budget in FLOPs (e.g. 1e18)")
    budget.add_argument("--hours", type=float, help="compute budget in hours on this machine, at the runs' own "
                                                    "measured FLOP rate")
    s.add_argument("--params", choices=("total", "non_embedding"), default="non_embedding",
                   help="which parameter count is N (the optimum depends on it; default non_embedding)")
    s.add_argument("--bootstrap", type=positive_int, default=100, help="resamples for the intervals")
    s.add_argument("--out", help="write PNG plots to this directory")


def _interval(lo: float, hi: float, fmt) -> str:
    return f"[{fmt(lo)}, {fmt(hi)}]"


def cmd_scaling(args) -> int:
    from cockpit.analysis.points import gather
    from cockpit.analysis.scaling import fit_law
    from cockpit.runs import runs_root

    runs_dir = runs_root(args.runs_dir)
    label, points, skipped = gather(runs_dir, args.sweep, args.runs)
    for line in skipped:
        print(f"left out: {line}", file=sys.stderr)
    if len(points) < 5:
        print(f"error: {len(points)} finished run{'s' if len(points) != 1 else ''} in {label}; a fit of 5 constants needs at least 5, and several sizes "
              f"at several token budgets to be worth trusting", file=sys.stderr)
        return 2
    n = [p.params(args.params) for p in points]
    d = [p.tokens for p in points]
    loss = [p.loss for p in points]
    fit = fit_law(n, d, loss, bootstrap=args.bootstrap)
    law = fit.law
    print(f"scaling fit over {len(points)} runs ({label}); N = {args.params.replace('_', '-')} parameters "
          f"({human(min(n))} .. {human(max(n))}), D = tokens trained ({human(min(d))} .. {human(max(d))})")
    print("L(N, D) = E + A / N^alpha + B / D^beta   (summed Huber on log-loss, L-BFGS, "
          f"90% intervals from {args.bootstrap} bootstrap refits)")
    for name in ("E", "A", "B", "alpha", "beta"):
        v, (lo, hi) = getattr(law, name), fit.intervals[name]
        print(f"  {name:5s} = {v:10.4g}   {_interval(lo, hi, lambda x: f'{x:.4g}')}")
    resid = [math.log(l_) - math.log(float(law.loss(a, b))) for a, b, l_ in zip(n, d, loss)]
    print(f"  fit residuals (log-loss): rms {statistics.pstdev(resid) if len(resid) > 1 else 0:.4f}, "
          f"max {max(abs(r) for r in resid):.4f}")
    budget, how = None, ""
    if args.budget:
        budget, how = args.budget, "given"
    elif args.hours:
        rates = [p.tokens_per_s * p.flops_per_token for p in points if p.tokens_per_s]
        if not rates:
            print("error: the runs recorded no throughput; give --budget in FLOPs instead", file=sys.stderr)
            return 2
        rate = statistics.median(rates)
        budget, how = args.hours * 3600 * rate, f"{args.hours:g} h at the runs' median {rate:.3g} FLOP/s"
    if budget:
        n_opt, d_opt = law.optimal(budget)
        (n_lo, n_hi), (d_lo, d_hi) = fit.optimal_interval(budget)
        print(f"compute-optimal for {budget:.3g} FLOPs ({how}): N = {human(n_opt)} {_interval(n_lo, n_hi, human)} "
              f"{args.params.replace('_', '-')} parameters, D = {human(d_opt)} tokens {_interval(d_lo, d_hi, human)}, "
              f"D/N = {d_opt / n_opt:.1f}; predicted loss {float(law.loss(n_opt, d_opt)):.4f}")
        for w in trust_warnings(n, d, n_opt, (n_lo, n_hi)):
            print(f"  caution: {w}")
    else:
        for w in trust_warnings(n, d, None, None):
            print(f"  caution: {w}")
        print("give --budget FLOPS or --hours H for the compute-optimal N and D")
    if args.out:
        from cockpit.analysis.plots import scaling_plots

        for path in scaling_plots(Path(args.out), points, args.params, law, budget):
            print(f"wrote {path}")
    return 0


def trust_warnings(n: list[float], d: list[float], n_opt: float | None, n_iv) -> list[str]:
    out = []
    sizes = sorted(set(n))
    budgets = min(len({b for a, b in zip(n, d) if a == s}) for s in sizes)  # token budgets per size
    if len(sizes) < 3:
        out.append(f"only {len(sizes)} model sizes: the N exponent is barely determined; use 3 or more")
    elif max(sizes) / min(sizes) < 4:
        out.append(f"the sizes span only {max(sizes) / min(sizes):.2f}x; a span of 4x or more pins the exponents")
    if budgets < 3:
        out.append(f"some size has only {budgets} token budget{'s' if budgets > 1 else ''}: the D exponent is barely "
                   f"determined; train each size at 3 or more")
    if n_opt is not None:
        if n_opt > 4 * max(sizes) or n_opt < min(sizes) / 4:
            out.append(f"N_opt is far outside the sizes trained ({human(min(sizes))} .. {human(max(sizes))}): "
                       f"an extrapolation; train a size near it")
        lo, hi = n_iv
        if lo > 0 and hi / lo > 3:
            out.append(f"the interval of N_opt spans {hi / lo:.1f}x: more runs (sizes x budgets) are needed to trust it")
    return out


def main(args) -> int:
    return cmd_scaling(args)
