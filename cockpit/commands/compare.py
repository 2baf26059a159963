"""``cockpit compare RUN... [--md] [--metric NAME] [--out DIR]``: runs side by side — the config
keys that differ, sizes, tokens, wall clock, tokens/s, final losses, conviction statistics —
and an overlay of their validation curves (or any metric) in the terminal or as a PNG."""

from __future__ import annotations

from pathlib import Path

from cockpit.args import fail
from runspec.run.metrics import GRAD_NORM_PREFIX, TRAIN_LOSS, VAL_LOSS


def register(sub) -> None:
    c = sub.add_parser("compare", help="runs side by side: differing config, sizes, speed, final losses, curves")
    c.add_argument("runs", nargs="+", help="two or more runs (ids, unique prefixes or directories)")
    c.add_argument("--md", action="store_true", help="a Markdown table (for notes and findings)")
    c.add_argument("--metric", default=VAL_LOSS, help=f"the curve to overlay (default {VAL_LOSS}; any logged name, "
                                                      f"e.g. {TRAIN_LOSS} or {GRAD_NORM_PREFIX}...)")
    c.add_argument("--out", help="write the overlay as a PNG into this directory")
    c.add_argument("--no-chart", action="store_true", help="the table only")
    c.set_defaults(func=main)


def main(args) -> int:
    from cockpit.analysis.compare import check_metric, markdown, overlay_series, plain, short_names, summarize, table
    from cockpit.runs import find_run, runs_root

    runs_dir = runs_root(args.runs_dir)
    rds = [find_run(r, runs_dir) for r in args.runs]
    ids = [rd.id for rd in rds]
    if len(set(ids)) < 2:
        return fail("compare needs two or more different runs (list them with: cockpit status)")
    summaries = [summarize(rd) for rd in dict(zip(ids, rds)).values()]
    problem = check_metric(summaries, args.metric)
    if problem and (args.out or args.metric != VAL_LOSS):
        return fail(problem)
    header, rows = table(summaries)
    print(markdown(header, rows) if args.md else plain(header, rows))
    suffix = short_names([s.run for s in summaries])[1]
    if suffix:
        print(f"(every run id ends in {suffix})")
    if not problem and not args.no_chart and not args.md:
        from cockpit.analysis.termplot import chart

        print()
        print(chart(overlay_series(summaries, args.metric), title=f"{args.metric} by step", xlabel="step",
                    ylabel=args.metric.rsplit("/", 1)[-1], ylog="loss" in args.metric))
    if args.out:
        from cockpit.analysis.plots import overlay_plot

        print(f"wrote {overlay_plot(Path(args.out), summaries, args.metric)}")
    return 0
