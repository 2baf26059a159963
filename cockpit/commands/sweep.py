"""``cockpit sweep SPEC.toml [--dry-run] [--strict]``, ``cockpit sweep ls``, ``cockpit sweep status NAME``."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from cockpit.args import fail
from cockpit.format import human
from cockpit.sweep import CONFIRM_OVER, Sweep, SweepError, load_sweep, queue_sweep
from cockpit.sweep_checks import sweep_warnings


def register(sub) -> None:
    s = sub.add_parser("sweep", help="expand a sweep spec into runs and queue them; sweep ls; sweep status NAME")
    s.add_argument("target", metavar="SPEC.toml | ls | status", help="a sweep spec (see examples/sweeps/), or ls, or status")
    s.add_argument("name", nargs="?", help="with status: the sweep (id or unique prefix)")
    s.add_argument("--dry-run", action="store_true", help="list the runs with parameters, tokens and FLOPs; queue nothing")
    s.add_argument("--yes", action="store_true", help=f"expand a sweep of more than {CONFIRM_OVER:,} runs")
    s.add_argument("--strict", action="store_true",
                   help="refuse the sweep when a run cannot mean anything (warmup longer than the run, no running "
                        "validation, tokens per parameter far outside what a fit uses) instead of warning")
    s.set_defaults(func=main)


STREAM_OVER = 100  # past this many runs the plan is printed row by row as each run is checked


def plan_row(i: int, r, counted: str) -> list[str]:
    n = r.params["total" if counted == "total" else "non_embedding"]
    return [str(i), r.name, *(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values.values()),
            human(r.params["total"]), human(r.params["non_embedding"]), human(r.tokens), f"{r.tokens / n:.1f}",
            f"{r.flops:.2e}"]


def plan_head(sweep_runs) -> list[str]:
    keys = list(sweep_runs[0].values) if sweep_runs else []
    return ["#", "run", *keys, "params", "non-emb", "tokens", "tok/param", "FLOPs"]


def plan_total(sweep: Sweep) -> str:
    total_tokens, total_flops = sum(r.tokens for r in sweep.runs), sum(r.flops for r in sweep.runs)
    return (f"{len(sweep.runs)} runs ({sweep.mode}), {human(total_tokens)} tokens, {total_flops:.2e} FLOPs in all; "
            f"tok/param counts {sweep.params_counted.replace('_', '-')} parameters")


def plan_table(sweep: Sweep) -> str:
    rows = [plan_row(i, r, sweep.params_counted) for i, r in enumerate(sweep.runs, 1)]
    widths = [max(len(x) for x in col) for col in zip(plan_head(sweep.runs), *rows)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip() for row in [plan_head(sweep.runs), *rows]]
    return "\n".join([*lines, plan_total(sweep)])


def sweeps(runs_dir) -> dict[str, list]:
    from cockpit.runs import read_states

    out: dict[str, list] = {}
    for listed in read_states(runs_dir).values():
        meta = listed.rd.read_meta()
        if meta.sweep:
            out.setdefault(meta.sweep, []).append((listed, meta))
    return out


def progress(listed) -> tuple[str, str]:
    """('step/total', final validation loss or the latest one) for a run of the sweep."""
    from cockpit.summary import summarize

    s = summarize(listed)
    v = s.val_loss
    return f"{s.step}/{s.max_steps}", f"{v:.4f}" if isinstance(v, (int, float)) else "-"


def estimate_line(sweep: Sweep, runs_dir) -> str:
    """The sweep's training time at the rates runs of the same shapes reached on this machine
    (one slot: runs one after another); shapes never trained here are counted, not guessed."""
    from cockpit.eta import shape_rates, summaries_of
    from cockpit.format import hms
    from cockpit.runs import read_states
    from runspec.config.shape import model_label

    rates = shape_rates(summaries_of(read_states(runs_dir)).values()) if runs_dir.is_dir() else {}
    known = [(r, rates.get(model_label(r.cfg.model))) for r in sweep.runs]
    timed = [r.tokens / rate for r, rate in known if rate]
    if not timed:
        return ("estimated time: unknown (no run of these shapes has trained here yet; cockpit bench train "
                "CONFIG measures one)")
    left = len(sweep.runs) - len(timed)
    return (f"estimated time: {hms(sum(timed))} for {len(timed)} of {len(sweep.runs)} runs at this machine's "
            f"measured rates, one after another" + (f"; {left} of shapes never trained here" if left else ""))


def main(args) -> int:
    from cockpit.runs import runs_root

    runs_dir = runs_root(args.runs_dir)
    try:
        if args.target not in ("ls", "status") and _is_study(args.target):
            return _search(args, runs_dir)
        if args.target == "status" and args.name and (runs_dir / ".cockpit" / "studies" / f"{args.name}.json").exists():
            from cockpit.study import describe, summary

            print(describe(summary(runs_dir, args.name)))
            return 0
        if args.target == "ls":
            found = sweeps(runs_dir)
            if not found:
                print(f"no sweeps under {runs_dir}/; start one with: cockpit sweep SPEC.toml (see examples/sweeps/)")
                return 0
            for sid in sorted(found):
                counts = Counter(listed.status for listed, _ in found[sid])
                parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                print(f"{sid}  {len(found[sid])} runs: {parts}")
            return 0
        if args.target == "status":
            if not args.name:
                raise SweepError("sweep status needs a sweep's name: cockpit sweep status NAME (cockpit sweep ls)")
            found = sweeps(runs_dir)
            ids = [s for s in found if s == args.name] or [s for s in found if s.startswith(args.name)]
            if len(ids) != 1:
                raise SweepError(f"sweep '{args.name}' " + ("matches several: " + ", ".join(ids) if ids else
                                 f"not found under {runs_dir}/; list them with: cockpit sweep ls"))
            runs = sorted(found[ids[0]], key=lambda x: x[0].rd.id)
            done = sum(1 for listed, _ in runs if listed.status == "completed")
            print(f"{ids[0]}: {done}/{len(runs)} completed")
            for listed, meta in runs:
                values = " ".join(f"{k}={v}" for k, v in meta.sweep_values.items())
                step, val = progress(listed)
                print(f"  {listed.rd.id:32s} {listed.status:10s} {step:>11s}  val {val:>7s}  {values}")
            return 0
        def streamed(i: int, n: int, run, counted: str) -> None:  # a large sweep shows itself as it is checked
            if n <= STREAM_OVER:
                return
            if i == 1:
                print(f"sweep: {n:,} runs; each is listed as it is checked", flush=True)
                print("  ".join(plan_head([run])), flush=True)
            print("  ".join(plan_row(i, run, counted)), flush=True)

        sweep = load_sweep(args.target, confirmed=args.yes, on_run=streamed)
        print(f"sweep {sweep.name}: {len(sweep.runs)} runs from {sweep.base}")
        print(plan_table(sweep) if len(sweep.runs) <= STREAM_OVER else plan_total(sweep))
        print(estimate_line(sweep, runs_dir))
        problems = sweep_warnings(sweep.runs, sweep.params_counted)
        for line in problems:
            print(f"warning: {line}", file=sys.stderr)
        if problems and args.strict:
            return fail(f"{args.target}: runs that cannot mean anything ({len(problems)} problem(s) above); fix the spec, "
                        f"or drop --strict to queue them anyway")
        if args.dry_run:
            return 0
        sweep_id, created = queue_sweep(sweep, runs_dir)
        print(f"queued {len(created)} runs as sweep {sweep_id}; a worker trains them (cockpit worker, or w in the "
              f"TUI); progress: cockpit sweep status {sweep_id}")
        return 0
    except SweepError as e:
        return fail(str(e))


def _is_study(target: str) -> bool:
    from pathlib import Path

    from cockpit.study import is_study

    return Path(target).is_file() and is_study(Path(target))


def _search(args, runs_dir) -> int:
    """A search spec (method = tpe ...): check it, then create the study and queue its first trials."""
    from cockpit.study import create, load_study_spec, trial_tokens

    st = load_study_spec(args.target)
    keys = ", ".join(f"{k} {next(iter(d))} {next(iter(d.values()))}" for k, d in st.space.items())
    budget = ""
    if st.budget_tokens is not None:
        one = trial_tokens(st, {})
        budget = f", a budget of {st.budget_tokens:,} tokens ({st.budget_tokens / one:.1f} whole trials of {one:,})"
    print(f"search {st.name}: {st.method}, up to {st.trials} trials{budget} ({st.parallel} at a time) of "
          f"{Path(st.base).name} "
          f"over {keys}; objective {st.objective} ({st.direction})"
          + (f"; pruned by {st.prune.method} from step {st.prune.min_steps}" if st.prune else ""))
    if args.dry_run:
        return 0
    created = create(st, runs_dir, log=print)
    print(f"queued the first {len(created)} trial(s); a worker runs them and asks for the next ones "
          f"(cockpit worker, or w in the TUI); progress: cockpit sweep status {st.name}")
    return 0
