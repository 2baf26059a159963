"""``cockpit compare RUN... [--sweep NAME] [--baseline RUN|GROUP] [--metric NAME...] [--ema A]``:
runs side by side — the config keys that differ, sizes, tokens, wall clock, tokens/s, every
final figure — with runs that differ only in their seed as one column (mean ± standard
deviation), Δs against a baseline at equal steps, tokens and training time (marked against the
seed spread), and an overlay of any metrics (a group's mean with a band) in the terminal or a PNG."""

from __future__ import annotations

from pathlib import Path

from cockpit.args import fail
from runspec.run.metrics import GRAD_NORM_PREFIX, TRAIN_LOSS, VAL_LOSS


def unit_interval(text: str) -> float:
    import argparse

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a smoothing factor in [0, 1), e.g. 0.9") from None
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"{v}: a smoothing factor in [0, 1), e.g. 0.9 (0: none)")
    return v


def register(sub) -> None:
    c = sub.add_parser("compare", help="runs side by side: differing config, sizes, speed, final figures, seed "
                                       "groups, Δ against a baseline, curves")
    c.add_argument("runs", nargs="*", help="runs (ids, unique prefixes, directories or globs such as 'abl-*')")
    c.add_argument("--sweep", action="append", default=[], metavar="NAME", help="every run of this sweep (repeatable)")
    c.add_argument("--baseline", metavar="RUN|GROUP",
                   help="Δ of every column against this one (a run, or a seed group by any of its runs or its name)")
    c.add_argument("--separate", action="store_true", help="one column per run, even for runs that differ only "
                                                             "in their seed")
    c.add_argument("--md", action="store_true", help="a Markdown table (for notes and findings)")
    c.add_argument("--metric", action="append", default=None, metavar="NAME",
                   help=f"a curve to overlay, one panel each (repeatable; default {VAL_LOSS}; any logged name, "
                        f"e.g. {TRAIN_LOSS} or {GRAD_NORM_PREFIX}...)")
    c.add_argument("--ema", type=unit_interval, default=0.0, metavar="ALPHA",
                   help="smooth the curves with an exponential moving average (0.9: strong; default none)")
    c.add_argument("--out", help="write the overlay as a PNG into this directory")
    c.add_argument("--no-chart", action="store_true", help="the table only")
    c.set_defaults(func=main)


def main(args) -> int:
    from cockpit.analysis.compare import (
        check_metric,
        legend,
        markdown,
        overlay_series,
        plain,
        short_names,
        summarize,
        table,
    )
    from cockpit.runs import RunError, runs_root, select_runs

    runs_dir = runs_root(args.runs_dir)
    try:
        rds = select_runs(args.runs, args.sweep, runs_dir)
        if args.baseline:
            from cockpit.runs import find_run

            try:  # a baseline run not listed joins the comparison
                extra = find_run(args.baseline, runs_dir)
                rds = rds if any(rd.id == extra.id for rd in rds) else [extra, *rds]
            except RunError:
                pass  # a group's name or a prefix of listed runs: resolved among the columns
    except RunError as e:
        return fail(str(e))
    ids = list(dict.fromkeys(rd.id for rd in rds))
    if len(ids) < 2:
        return fail("compare needs two or more different runs (list them with: cockpit status)")
    summaries = [summarize(rd) for rd in dict(zip([rd.id for rd in rds], rds)).values()]
    metrics = args.metric or [VAL_LOSS]
    problems = [p for m in metrics if (p := check_metric(summaries, m))]
    if problems and (args.out or args.metric):
        return fail(problems[0])
    try:
        header, rows = table(summaries, args.baseline, grouped=not args.separate)
    except ValueError as e:
        return fail(str(e))
    print(markdown(header, rows) if args.md else plain(header, rows))
    note = legend(summaries, args.baseline) if not args.separate else ""
    if note:
        print(("\n" if args.md else "") + f"({note})")
    suffix = short_names([s.run for s in summaries])[1]
    if suffix:
        print(f"(every run id ends in {suffix})")
    if not problems and not args.no_chart and not args.md:
        from cockpit.analysis.termplot import chart

        for m in metrics:
            print()
            lines = overlay_series(summaries, m, args.ema, not args.separate, args.baseline)
            print(chart(lines, title=f"{m} by step" + (f" (EMA {args.ema})" if args.ema else ""), xlabel="step",
                        ylabel=m.rsplit("/", 1)[-1], ylog="loss" in m))
    if args.out:
        from cockpit.analysis.plots import overlay_plot

        png = overlay_plot(Path(args.out), summaries, metrics, smooth=args.ema, grouped=not args.separate,
                           baseline=args.baseline)
        print(f"wrote {png}")
    return 0
