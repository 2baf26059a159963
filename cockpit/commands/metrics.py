"""``cockpit metrics RUN [--series NAME...] [--at STEP] [--csv OUT | --parquet OUT]``: a table of
a run's logged series (first, last, min, max and the value at a step) and the series themselves
as a file, one row per logged step, for a notebook or a spreadsheet."""

from __future__ import annotations

from pathlib import Path

from cockpit.args import non_negative_int


def register(sub) -> None:
    m = sub.add_parser("metrics", help="a run's series: first/last/min/max/at-step table, or a CSV/parquet file")
    m.add_argument("run", help="run id, unique id prefix, or run directory")
    m.add_argument("--series", action="append", metavar="NAME",
                   help="a logged name or a glob (e.g. 'debug/grad_norm/*'); repeat for more (default: all)")
    m.add_argument("--at", type=non_negative_int, metavar="STEP", help="also each series' value at this step "
                                                                        "(the last logged at or before it)")
    out = m.add_mutually_exclusive_group()
    out.add_argument("--csv", metavar="OUT", help="write the series to this CSV file (one row per logged step)")
    out.add_argument("--parquet", metavar="OUT", help="write the series to this parquet file")
    m.add_argument("--md", action="store_true", help="the table in Markdown")
    m.set_defaults(func=main)


def main(args) -> int:
    from cockpit.analysis.compare import markdown, plain
    from cockpit.analysis.series import read_series, select, summary_table, wide_rows, write_csv, write_parquet
    from cockpit.args import fail
    from cockpit.runs import find_run, runs_root

    rd = find_run(args.run, runs_root(args.runs_dir))
    rs = read_series(rd)
    try:
        names = select(rs, args.series)
    except ValueError as e:
        return fail(str(e))
    if not names:
        return fail(f"{rd.id} has logged no metrics yet (state: {rd.read_state().status}); try again once it trains")
    target = args.csv or args.parquet
    if target:
        path = Path(target)
        if path.is_dir():
            return fail(f"{path} is a directory; name the file to write, e.g. {path / (rd.id + '.csv')}")
        if not path.parent.exists():
            return fail(f"{path.parent} does not exist; create it or write somewhere else")
        header, rows = wide_rows(rs, names)
        (write_csv if args.csv else write_parquet)(path, header, rows)
        print(f"wrote {path}: {len(rows):,} steps x {len(names)} series (+ step, wall_s)")
        return 0
    header, rows = summary_table(rs, names, args.at)
    print(markdown(header, rows) if args.md else plain(header, rows))
    return 0
