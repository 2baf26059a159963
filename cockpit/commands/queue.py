"""``cockpit queue add|ls|mv|stop|retry|rm|pause|resume``: the run queue, from the shell."""

from __future__ import annotations

import json

from cockpit import control
from cockpit.args import add_set, warn
from cockpit.runs import runs_root


def register(sub) -> None:
    q = sub.add_parser("queue", help="the run queue: add, ls, mv, stop, retry, rm, pause, resume")
    qs = q.add_subparsers(dest="queue_cmd", required=True)
    a = qs.add_parser("add", help="validate configs and queue them")
    a.add_argument("configs", nargs="+", help="run configs (TOML), queued in this order")
    a.add_argument("--name", help="run name (one config only; default: the config file's stem)")
    a.add_argument("--front", action="store_true", help="at the front of the queue instead of the end")
    a.add_argument("--after", metavar="RUN", help="place them right after this queued run")
    a.add_argument("--depends-on", action="append", default=[], metavar="RUN",
                   help="start only once RUN has completed (repeatable; recorded in run.json)")
    a.add_argument("--tag", action="append", default=[], help="a tag recorded in run.json (repeatable)")
    add_set(a)
    ls = qs.add_parser("ls", help="queued runs in order")
    ls.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    mv = qs.add_parser("mv", help="move a queued run")
    mv.add_argument("run", help="a run id or a unique prefix of one")
    g = mv.add_mutually_exclusive_group(required=True)
    g.add_argument("--to", type=int, metavar="POSITION", help="to this place (1 = next to start)")
    g.add_argument("--up", action="store_true", help="one place earlier")
    g.add_argument("--down", action="store_true", help="one place later")
    for name, text in (("stop", "stop a running run cleanly (checkpoint, stopped) or take a queued one out"),
                       ("retry", "queue a failed, stopped or interrupted run again; it resumes from its checkpoint")):
        p = qs.add_parser(name, help=text)
        p.add_argument("run", help="a run id or a unique prefix of one")
    rm = qs.add_parser("rm", help="remove a queued run (--force for a finished one: deletes its directory)")
    rm.add_argument("run", help="a run id or a unique prefix of one")
    rm.add_argument("--force", action="store_true", help="also a finished run: its directory is deleted")
    qs.add_parser("pause", help="the worker starts no new runs (the running one finishes)")
    qs.add_parser("resume", help="the worker starts runs again")
    q.set_defaults(func=queue)


def queue(args) -> int:
    from cockpit.queue import Queue

    q = Queue(runs_root(args.runs_dir), warn=warn)
    c = args.queue_cmd
    if c == "add":
        for rd in q.add(args.configs, args.name, args.front, args.after, args.set, tags=args.tag,
                        depends_on=args.depends_on):
            order = q.order
            where = f"at position {order.index(rd.id) + 1}" if rd.id in order else "(it has already started)"
            print(f"queued {rd.id} {where}")
    elif c == "ls":
        from cockpit.status import collect, queue_counts
        from runspec.run.rundir import RUNNING
        from cockpit.worker import device_label

        st = collect(q.runs_dir, warn=warn)
        if args.json:
            print(json.dumps({k: st[k] for k in ("paused", "queue", "running")}, indent=1))
        else:
            waiting = [item for item in st["queue"] if item["status"] != RUNNING]  # (running: listed above)
            print("queue is PAUSED" if st["paused"] else "queue", f"({queue_counts(st)})")
            for r in st["running"]:
                where = f"  [{device_label(r['slot'].split(','))}]" if r.get("slot") else ""
                print(f"  running  {r['id']}  {r['model']}  step {r['step']}/{r['max_steps']}{where}")
            for item in waiting:
                waiting = f"  (waiting for {item['waiting_for']})" if item.get("waiting_for") else ""
                print(f"  {item['position']:>7}  {item['id']}  {item['model']}{waiting}")
    elif c == "mv":
        print(f"{args.run} is now at position {q.move(args.run, args.to, args.up, args.down)}")
    elif c == "stop":
        print(control.stop(q, args.run))
    elif c == "retry":
        rd = control.retry(q, args.run)
        print(f"queued {rd.id} again at position {q.order.index(rd.id) + 1}; it resumes from its last checkpoint")
    elif c == "rm":
        control.remove(q, args.run, args.force)
        print(f"removed {args.run}")
    elif c in ("pause", "resume"):
        q.set_paused(c == "pause")
        print("paused: the worker starts no new runs" if c == "pause" else "resumed")
    return 0
