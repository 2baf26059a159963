"""``cockpit analyze scaling (--sweep NAME | RUN...) [--budget FLOPS | --hours H]``: a Chinchilla
fit over finished runs (parametric, and IsoFLOP parabolas when runs share budgets), with
intervals, the compute-optimal split for a budget, and plain words when the runs cannot support
it. ``cockpit analyze lr``: the best learning rate per size and how it moves with width."""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

from cockpit.sweep_cli import human


def add_parser(sub) -> None:
    from cockpit.cli import positive_int

    a = sub.add_parser("analyze", help="turn finished runs into answers: analyze scaling | lr")
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
    s.add_argument("--no-chart", action="store_true", help="no terminal charts")
    lr = asub.add_parser("lr", help="the best learning rate per model size, and how it moves with width")
    lr.add_argument("runs", nargs="*", help="runs (ids, prefixes or directories); or --sweep")
    lr.add_argument("--sweep", help="every run of this sweep")
    lr.add_argument("--out", help="write a PNG plot to this directory")
    lr.add_argument("--no-chart", action="store_true", help="no terminal chart")


def _interval(lo: float, hi: float, fmt) -> str:
    return f"[{fmt(lo)}, {fmt(hi)}]"


def cmd_scaling(args) -> int:
    from cockpit.analysis.points import gather
    from cockpit.analysis.scaling import fit_isoflop, fit_law
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
    flops = [p.flops for p in points]
    iso = fit_isoflop(n, d, flops, loss)
    print_isoflop(iso, budget, args.params)
    if not args.no_chart:
        print()
        print(scaling_chart(points, args.params))
        if iso:
            print()
            print(isoflop_chart(iso))
    if args.out:
        from cockpit.analysis.plots import scaling_plots

        for path in scaling_plots(Path(args.out), points, args.params, law, budget, iso):
            print(f"wrote {path}")
    return 0


def print_isoflop(iso, budget: float | None, counted: str) -> None:
    """Approach 2's answer beside Approach 3's (they should roughly agree when both are trustworthy)."""
    if iso is None:
        print("IsoFLOP curves (Approach 2): none — no 3 sizes share a compute budget (within 15%); a sweep "
              "with a flops axis makes them")
        return
    print(f"IsoFLOP curves (Approach 2): {len(iso.curves)} compute budget{'s' if len(iso.curves) != 1 else ''}; "
          f"a parabola of loss in ln N per budget")
    for c in iso.curves:
        where = ("inside the sizes trained" if c.inside else
                 f"the {c.edge} size is best: the minimum is not bracketed (train "
                 f"{'smaller' if c.edge == 'smallest' else 'larger'} sizes at this budget); not used" if c.edge else
                 "no minimum (loss falls all the way)" if not math.isfinite(c.n_opt) else
                 "outside the sizes trained: not used")
        at = f"N_opt = {human(c.n_opt)}, D_opt = {human(c.d_opt)}" if math.isfinite(c.n_opt) else ""
        print(f"  C = {c.flops:.3g}: {len(c.n)} runs, {human(min(c.n))} .. {human(max(c.n))}; {at}"
              f"{', ' if at else ''}{where}")
    if math.isfinite(iso.a):
        print(f"  N_opt ∝ C^{iso.a:.3f}, D_opt ∝ C^{iso.b:.3f} (Chinchilla's Approach 2: 0.49, 0.51)")
        if budget:
            n_opt, d_opt = iso.optimal(budget)
            print(f"  compute-optimal for {budget:.3g} FLOPs by Approach 2: N = {human(n_opt)} "
                  f"{counted.replace('_', '-')} parameters, D = {human(d_opt)} tokens")
    else:
        print("  exponents need 2 or more budgets whose minimum lies inside the sizes trained")


def scaling_chart(points, counted: str) -> str:
    from cockpit.analysis.termplot import Series, chart

    sizes = sorted({p.params(counted) for p in points})
    series = []
    for size in sizes:
        pts = sorted((p for p in points if p.params(counted) == size), key=lambda p: p.flops)
        series.append(Series(f"N = {human(size)}", [p.flops for p in pts], [p.loss for p in pts]))
    return chart(series, title="final validation loss against compute, one line per size", xlabel="training FLOPs",
                 ylabel="loss", xlog=True, ylog=True)


def isoflop_chart(iso) -> str:
    from cockpit.analysis.termplot import Series, chart

    series = []
    for c in iso.curves:
        pts = sorted(zip(c.n, c.loss))
        series.append(Series(f"C = {c.flops:.3g}", [a for a, _ in pts], [b for _, b in pts]))
    return chart(series, title="IsoFLOP curves: loss against N at fixed compute", xlabel="N", ylabel="loss",
                 xlog=True, ylog=True)


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


def cmd_lr(args) -> int:
    from cockpit.analysis.lr import fit_lr
    from cockpit.analysis.points import gather
    from cockpit.runs import runs_root

    label, points, skipped = gather(runs_root(args.runs_dir), args.sweep, args.runs)
    for line in skipped:
        print(f"left out: {line}", file=sys.stderr)
    for p in points:
        if not math.isfinite(p.loss):
            print(f"left out: {p.run}: final loss {p.loss} (diverged: this rate is too high)", file=sys.stderr)
    points = [p for p in points if math.isfinite(p.loss)]
    if len({p.lr for p in points}) < 2:
        print(f"error: {len(points)} finished run{'s' if len(points) != 1 else ''} in {label} with "
              f"{len({p.lr for p in points})} learning rate(s); sweep optim.lr over 3 or more values per size "
              f"(see examples/sweeps/lr.toml)", file=sys.stderr)
        return 2
    fit = fit_lr(points)
    print(f"learning rate over {len(points)} runs ({label}): a parabola of final validation loss in log10(lr) "
          f"per size")
    print(f"  {'size':>8}  {'width':>5}  {'rates':>5}  {'best tried':>10}  {'fitted min':>10}  {'loss there':>10}")
    for sz in fit.sizes:
        opt = f"{sz.lr_opt:10.3g}" if math.isfinite(sz.lr_opt) else f"{'-':>10}"
        print(f"  {human(sz.params):>8}  {sz.width or '-':>5}  {len(set(sz.lrs)):>5}  {sz.best_tried:10.3g}  {opt}  "
              f"{sz.loss_opt:10.4f}" + (f"   ({sz.why})" if sz.why else ""))
    for size in sorted({p.params_total for p in points}):
        toks = [p.tokens for p in points if p.params_total == size and p.lr is not None]
        if toks and max(toks) > 1.1 * min(toks):
            print(f"  caution: the runs of size {human(size)} trained different token counts ({human(min(toks))} .. "
                  f"{human(max(toks))}): their rates are not compared like for like")
    if math.isfinite(fit.exponent):
        print(f"  lr_opt ∝ width^{fit.exponent:.2f} over widths "
              f"{', '.join(str(s.width) for s in fit.sizes if s.usable)} (μP predicts -1 for Adam's hidden "
              f"matrices; standard practice lands between -1 and -0.5)")
        for w in (256, 384, 512, 768):
            print(f"    predicted at d_model {w}: {fit.predict(w):.3g}")
    else:
        print("  how lr moves with width needs fitted minima at 2 or more widths")
    if not args.no_chart:
        from cockpit.analysis.termplot import Series, chart

        print()
        print(chart([Series(f"N = {human(sz.params)}" + (f" (d {sz.width})" if sz.width else ""), sz.lrs, sz.losses)
                     for sz in fit.sizes], title="final validation loss against learning rate", xlabel="lr",
                    ylabel="loss", xlog=True))
    if args.out:
        from cockpit.analysis.plots import lr_plot

        print(f"wrote {lr_plot(Path(args.out), fit)}")
    return 0


def report(kind: str, runs_dir, runs: list[str], out: str | None = None, budget: float | None = None,
           bootstrap: int = 100) -> tuple[int, str]:
    """(exit code, the text `cockpit analyze KIND RUN...` prints, charts left out): for the
    findings document and the TUI's Compare tab."""
    import argparse
    import contextlib
    import io

    ns = argparse.Namespace(runs_dir=str(runs_dir), sweep=None, runs=runs, no_chart=True, out=out, budget=budget,
                            hours=None, params="non_embedding", bootstrap=bootstrap)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        code = cmd_lr(ns) if kind == "lr" else cmd_scaling(ns)
    return code, buf.getvalue().rstrip()


def main(args) -> int:
    return cmd_lr(args) if args.analysis == "lr" else cmd_scaling(args)
