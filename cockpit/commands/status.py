"""``cockpit status``: the worker, the queue, running runs, GPUs and keep-awake at a glance."""

from __future__ import annotations

import json

from cockpit.args import warn
from cockpit.runs import runs_root


def register(sub) -> None:
    s = sub.add_parser("status", help="worker, queue, running runs, GPUs and keep-awake")
    s.add_argument("--json", action="store_true", help="one JSON object instead of the text")
    s.set_defaults(func=status)


def status(args) -> int:
    from cockpit.status import collect, render

    st = collect(runs_root(args.runs_dir), warn=warn)
    print(json.dumps(st, indent=1) if args.json else render(st))
    return 0
