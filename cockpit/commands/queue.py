"""``cockpit queue add|ls|mv|stop|retry|rm|pause|resume``: the run queue, from the shell."""

from __future__ import annotations

import json
import sys

from cockpit import control
from cockpit.args import add_set, fail, positive_int, warn
from cockpit.runs import RunError, runs_root
from cockpit.seeds import parse_seeds


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
    a.add_argument("--seeds", type=parse_seeds, metavar="N|S,S,...",
                   help="each config once per seed: N seeds from the config's train.seed, or these seeds; "
                        "named NAME-s<seed> (compare shows them as one column, mean ± std)")
    add_set(a)
    ls = qs.add_parser("ls", help="queued runs in order")
    ls.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    ls.add_argument("--sweep", metavar="NAME", help="only this sweep's runs")
    ls.add_argument("--tag", metavar="TAG", help="only the runs with this tag")
    mv = qs.add_parser("mv", help="move queued runs (several, a sweep's or a tag's move together, in their order)")
    add_selection(mv)
    g = mv.add_mutually_exclusive_group(required=True)
    g.add_argument("--to", type=positive_int, metavar="POSITION", help="to this place (1 = next to start)")
    g.add_argument("--up", action="store_true", help="one place earlier (one run)")
    g.add_argument("--down", action="store_true", help="one place later (one run)")
    for name, text in (("stop", "stop running runs cleanly (checkpoint, stopped) or take queued ones out"),
                       ("retry", "queue failed, stopped or interrupted runs again; each resumes from its checkpoint")):
        add_selection(qs.add_parser(name, help=text))
    rm = qs.add_parser("rm", help="remove queued runs (--force for finished ones: deletes their directories)")
    add_selection(rm)
    rm.add_argument("--force", action="store_true", help="also finished runs: their directories are deleted")
    add_selection(qs.add_parser("pause", help="the worker starts no new runs (the running one finishes); with runs, "
                                             "--sweep or --tag: holds just those, in place"))
    add_selection(qs.add_parser("resume", help="the worker starts runs again; with runs, --sweep or --tag: lets "
                                              "those held runs go"))
    q.set_defaults(func=queue)


def add_selection(p) -> None:
    p.add_argument("runs", nargs="*", metavar="RUN", help="run ids, names or unique prefixes")
    p.add_argument("--sweep", metavar="NAME", help="every run of this sweep (cockpit sweep ls)")
    p.add_argument("--tag", metavar="TAG", help="every run with this tag")


def each(rds, act) -> int:
    """``act`` on every run, one line each; a run that refuses is a line too, and exit 2."""
    failed = 0
    for rd in rds:
        try:
            print(act(rd))
        except RunError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    return 2 if failed else 0


def queue(args) -> int:
    from cockpit.queue import Queue

    q = Queue(runs_root(args.runs_dir), warn=warn)
    c = args.queue_cmd
    if c == "add":
        for rd in q.add(args.configs, args.name, args.front, args.after, args.set, tags=args.tag,
                        depends_on=args.depends_on, seeds=args.seeds):
            order = q.order
            where = f"at position {order.index(rd.id) + 1}" if rd.id in order else "(it has already started)"
            print(f"queued {rd.id} {where}")
    elif c == "ls":
        from cockpit.status import collect, queue_counts
        from cockpit.worker import device_label
        from runspec.run.rundir import RUNNING

        st = collect(q.runs_dir, warn=warn)
        if args.sweep or args.tag:  # only these runs, counted as such
            keep = {rd.id for rd in control.select(q, [], args.sweep, args.tag)}
            st["queue"] = [item for item in st["queue"] if item["id"] in keep]
            st["running"] = [r for r in st["running"] if r["id"] in keep]
        if args.json:
            print(json.dumps({k: st[k] for k in ("paused", "queue", "running")}, indent=1))
        else:
            waiting = [item for item in st["queue"] if item["status"] != RUNNING]  # (running: listed above)
            print("queue is PAUSED" if st["paused"] else "queue", f"({queue_counts(st)})")
            for r in st["running"]:
                where = f"  [{device_label(r['slot'].split(','))}]" if r.get("slot") else ""
                print(f"  running  {r['id']}  {r['model']}  step {r['step']}/{r['max_steps']}{where}")
            for item in waiting:
                waiting = "  (held)" if item.get("held") else (
                    f"  (waiting for {item['waiting_for']})" if item.get("waiting_for") else "")
                print(f"  {item['position']:>7}  {item['id']}  {item['model']}{waiting}")
    elif c == "mv":
        rds = control.select(q, args.runs, args.sweep, args.tag)
        if len(rds) == 1 and not (args.sweep or args.tag):
            print(f"{rds[0].id} is now at position {q.move(rds[0].id, args.to, args.up, args.down)}")
        elif args.to is None:
            return fail("--up and --down move one run; give several runs a place with --to POSITION")
        else:
            at, left = control.move_many(q, rds, args.to)
            moved = len(rds) - len(left)
            said = f"moved {moved} run(s) to positions {at}-{at + moved - 1}" if moved else "no queued run to move"
            print(said + (f"; {len(left)} not queued, left as they are" if left else ""))
    elif c == "stop":
        return each(control.select(q, args.runs, args.sweep, args.tag), lambda rd: control.stop(q, rd.id))
    elif c == "retry":
        def again(rd):
            control.retry(q, rd.id)
            return f"queued {rd.id} again at position {q.order.index(rd.id) + 1}; it resumes from its last checkpoint"
        return each(control.select(q, args.runs, args.sweep, args.tag), again)
    elif c == "rm":
        def remove(rd):
            sweep = rd.read_meta().sweep  # (read before: --force deletes the directory)
            control.remove(q, rd.id, args.force)
            if not sweep:
                return f"removed {rd.id}"
            from cockpit.runs import list_runs

            left = sum(1 for other in list_runs(q.runs_dir) if other.read_meta().sweep == sweep)
            # a sweep's analysis and status count its members: say what this leaves of it
            return f"removed {rd.id} from sweep {sweep} ({left} of its runs remain)"
        return each(control.select(q, args.runs, args.sweep, args.tag), remove)
    elif c in ("pause", "resume") and (args.runs or args.sweep or args.tag):
        rds = control.select(q, args.runs, args.sweep, args.tag)
        changed, left = q.hold([rd.id for rd in rds], held=c == "pause")
        said = (f"held {len(changed)} queued run(s) in place: the worker skips them until 'cockpit queue resume' "
                f"of them" if c == "pause" else f"let {len(changed)} held run(s) go")
        print(said + (f"; {len(left)} not queued, left as they are" if left else ""))
    elif c in ("pause", "resume"):
        q.set_paused(c == "pause")
        print("paused: the worker starts no new runs" if c == "pause" else "resumed")
    return 0
