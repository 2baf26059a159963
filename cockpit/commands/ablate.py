"""``cockpit ablate BASE.toml --vary KEY=V1,V2 [--vary ...] --seeds N``: the baseline and each
variant, N seeds each, queued as one sweep, and a findings entry whose evidence is the
comparison against the baseline (rebuilt by the worker when the last run ends)."""

from __future__ import annotations

from pathlib import Path

from cockpit.args import add_set, fail
from cockpit.seeds import Seeds, parse_seeds


def register(sub) -> None:
    a = sub.add_parser("ablate", help="queue a baseline and its variants with N seeds each, and a findings entry "
                                      "comparing them against the baseline")
    a.add_argument("base", help="the baseline config (TOML)")
    a.add_argument("--vary", action="append", required=True, metavar="KEY=V1,V2,...",
                   help="a key and the values its variants take (repeatable; one key changed at a time)")
    a.add_argument("--grid", action="store_true", help="every combination of the --vary values instead of one key "
                                                       "at a time")
    a.add_argument("--seeds", type=parse_seeds, default=Seeds(count=3), metavar="N|S,S,...",
                   help="seeds per arm (default 3, from the base's train.seed; or a comma list)")
    a.add_argument("--name", help="the ablation's name (default: the base config's stem + '-abl')")
    a.add_argument("--question", help="the findings entry's title (default: what is varied, against the base)")
    a.add_argument("--findings", default="findings", metavar="DIR", help="the findings directory (default ./findings)")
    a.add_argument("--dry-run", action="store_true", help="list the runs, queue nothing")
    add_set(a)
    a.set_defaults(func=main)


def main(args) -> int:
    from cockpit.ablate import AblationError, parse_vary, plan, queue_ablation
    from cockpit.findings import FindingsError
    from cockpit.runs import RunError, runs_root

    base = Path(args.base)
    name = args.name or f"{base.stem}-abl"
    try:
        varies = [parse_vary(v) for v in args.vary]
        keys = [k for k, _ in varies]
        if len(set(keys)) != len(keys):
            raise AblationError(f"--vary {keys}: a key given twice; give its values once, comma-separated")
        if args.dry_run:
            planned = plan(base, varies, args.seeds, name, args.grid, args.set)
            for run_name, overrides, _, _ in planned:
                print(f"{run_name:40s} {' '.join(overrides)}")
            print(f"{len(planned)} runs (dry run: nothing queued)")
            return 0
        question = args.question or f"{', '.join(keys)} against {base.stem}"
        record, rds = queue_ablation(base, varies, args.seeds, name, runs_root(args.runs_dir), Path(args.findings),
                                     question, args.grid, args.set)
    except (AblationError, FindingsError, RunError) as e:
        return fail(str(e))
    print(f"queued {len(rds)} runs as sweep {record.sweep} (cockpit queue ls --sweep {record.sweep})")
    print(f"wrote {record.entry}: its evidence is the comparison against {record.baseline}; the worker rebuilds "
          f"{Path(record.findings) / 'FINDINGS.md'} when the last run ends")
    print(f"meanwhile: cockpit compare --sweep {record.sweep} --baseline {record.baseline}")
    return 0
