"""``cockpit findings [new "CLAIM" --runs RUN... | --sweep NAME]``: findings/FINDINGS.md from
your entries, the evidence under each regenerated from the runs."""

from __future__ import annotations

from pathlib import Path

from cockpit.args import fail
from cockpit.findings import SHOWS, FindingsError, build, new_entry


def register(sub) -> None:
    f = sub.add_parser("findings", help="build findings/FINDINGS.md from your entries (findings new: start one)")
    f.add_argument("--dir", default="findings", help="the findings directory (default ./findings)")
    fsub = f.add_subparsers(dest="findings_cmd")
    n = fsub.add_parser("new", help="start an entry: a claim and the runs or sweep that support it")
    n.add_argument("title", help="the claim, in a sentence")
    n.add_argument("--runs", nargs="+", default=[], help="the runs behind the claim")
    n.add_argument("--sweep", help="or the sweep behind it")
    n.add_argument("--baseline", metavar="RUN|GROUP", help="compare: Δs of every column against this run or seed "
                                                           "group (marked against the seed spread)")
    n.add_argument("--show", choices=SHOWS, default=None, help="what to regenerate under the claim (default: "
                                                                "compare for runs, scaling for a sweep)")
    f.set_defaults(func=main)


def main(args) -> int:
    from cockpit.runs import RunError, find_run, runs_root

    root, runs_dir = Path(args.dir), runs_root(args.runs_dir)
    try:
        if args.findings_cmd == "new":
            if bool(args.runs) == bool(args.sweep):
                raise FindingsError("give --runs RUN... or --sweep NAME (one of them)")
            for r in args.runs:  # a typo now is cheaper than a "runs gone" later
                find_run(r, runs_dir)
            path = new_entry(root, args.title, [find_run(r, runs_dir).id for r in args.runs], args.sweep,
                             args.show or ("scaling" if args.sweep else "compare"), baseline=args.baseline)
            print(f"wrote {path}: write the claim under its header, then: cockpit findings")
            return 0
        out, count = build(root, runs_dir)
        print(f"wrote {out} ({count} entr{'y' if count == 1 else 'ies'})")
        return 0
    except (FindingsError, RunError) as e:
        return fail(str(e))
