"""``cockpit findings``: findings/FINDINGS.md built from small entries the user writes.

An entry is a Markdown file in findings/entries/ with a TOML header naming what supports it:

    +++
    title = "SwiGLU beats GELU at 10M"
    runs = ["abl-gelu", "abl-swiglu"]      # or: sweep = "cpu_ladder"
    show = "compare"                        # compare (default) | scaling | lr
    baseline = "abl-gelu"                   # compare: Δs against this run or seed group
    metric = VAL_LOSS        # compare: the curve to overlay
    budget = 1e15                           # scaling: the compute-optimal split at this many FLOPs
    bootstrap = 100                         # scaling: resamples for the intervals
    +++
    The claim, in the author's own words. Never edited by cockpit.

Every build regenerates the tables and plots under each claim from the runs as they are now;
a claim whose runs are gone says so. The document is written whole (temp file + rename) and
only when every entry could be read, so a typo never costs the last good document.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from runspec.config.schema import tomllib
from runspec.fs import atomic_write
from runspec.run.metrics import VAL_LOSS

SHOWS = ("compare", "scaling", "lr")
KEYS = {"title", "runs", "sweep", "show", "metric", "budget", "bootstrap", "baseline"}
HEADER = re.compile(r"\A\+\+\+[ \t]*\n(.*?)\n\+\+\+[ \t]*\n?(.*)\Z", re.S)


class FindingsError(ValueError):
    pass


@dataclass
class Entry:
    path: Path
    title: str
    prose: str
    runs: list[str] = field(default_factory=list)
    sweep: str | None = None
    show: str = "compare"
    metric: str = VAL_LOSS
    budget: float | None = None
    bootstrap: int = 100
    baseline: str | None = None

    @property
    def slug(self) -> str:
        return self.path.stem


def read_entry(path: Path) -> Entry:
    text = path.read_text(encoding="utf-8")
    m = HEADER.match(text)
    if not m:
        raise FindingsError(f"{path}: no +++ header; start the file with +++, title = \"...\", runs = [...] or "
                            f"sweep = \"...\", +++, then the claim")
    try:
        head = tomllib.loads(m.group(1))
    except tomllib.TOMLDecodeError as e:
        raise FindingsError(f"{path}: header TOML: {e}") from None
    unknown = set(head) - KEYS
    if unknown:
        raise FindingsError(f"{path}: unknown key(s) {sorted(unknown)}; use {', '.join(sorted(KEYS))}")
    title = head.get("title")
    if not isinstance(title, str) or not title.strip():
        raise FindingsError(f"{path}: title = \"...\" is required")
    runs, sweep = head.get("runs", []), head.get("sweep")
    if not (isinstance(runs, list) and all(isinstance(r, str) for r in runs)):
        raise FindingsError(f"{path}: runs = {runs!r} must be a list of run names")
    if sweep is not None and not isinstance(sweep, str):
        raise FindingsError(f"{path}: sweep = {sweep!r} must be a sweep name")
    if bool(runs) == bool(sweep):
        raise FindingsError(f"{path}: give runs = [...] or sweep = \"...\" (one of them): what supports the claim")
    show = head.get("show", "compare")
    if show not in SHOWS:
        raise FindingsError(f"{path}: show = {show!r}: use {', '.join(SHOWS)}")
    budget = head.get("budget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0):
        raise FindingsError(f"{path}: budget = {budget!r} must be a positive number of FLOPs")
    metric = head.get("metric", VAL_LOSS)
    if not isinstance(metric, str):
        raise FindingsError(f"{path}: metric = {metric!r} must be a metric name")
    boot = head.get("bootstrap", 100)
    if isinstance(boot, bool) or not isinstance(boot, int) or boot < 0:
        raise FindingsError(f"{path}: bootstrap = {boot!r} must be a whole number of resamples (0: none)")
    baseline = head.get("baseline")
    if baseline is not None and (not isinstance(baseline, str) or not baseline.strip()):
        raise FindingsError(f"{path}: baseline = {baseline!r} must be a run's or a seed group's name")
    return Entry(path, title.strip(), m.group(2).strip("\n"), list(runs), sweep, show, metric,
                 float(budget) if budget else None, boot, baseline)


def _resolve(entry: Entry, runs_dir: Path) -> tuple[list, list[str], str]:
    """(run dirs found, refs that are gone, what was asked for)."""
    from cockpit.runs import RunError, find_run, list_runs

    if entry.sweep:
        all_runs = list_runs(runs_dir)
        rds = [rd for rd in all_runs if (rd.read_meta().sweep or "") == entry.sweep]
        if not rds:
            ids = sorted({s for rd in all_runs if (s := rd.read_meta().sweep) and s.startswith(entry.sweep)})
            rds = [rd for rd in all_runs if ids and rd.read_meta().sweep == ids[-1]]  # the newest of that name
        return rds, ([] if rds else [f"sweep {entry.sweep}"]), f"sweep {entry.sweep}"
    found, gone = [], []
    for ref in entry.runs:
        try:
            found.append(find_run(ref, runs_dir))
        except RunError:
            gone.append(ref)
    return found, gone, ", ".join(entry.runs)


def render_entry(entry: Entry, runs_dir: Path, root: Path) -> list[str]:
    from cockpit.analysis.compare import check_metric, legend, markdown, summarize, table

    lines = [f"## {entry.title}", "", entry.prose, ""] if entry.prose else [f"## {entry.title}", ""]
    rds, gone, asked = _resolve(entry, runs_dir)
    src = entry.path.relative_to(root.parent) if entry.path.is_relative_to(root.parent) else entry.path
    lines.append(f"*Evidence: {asked} ({entry.show}); entry `{src}`.*")
    lines.append("")
    if gone:
        lines += [f"> **Runs gone:** {', '.join(gone)} — deleted, renamed or under another runs directory. "
                  + ("Nothing supports this claim now." if not rds else "What follows covers the rest."), ""]
    if not rds:
        return lines
    plots = root / "plots"
    if entry.show == "compare":
        summaries = [summarize(rd) for rd in rds]
        try:
            header, rows = table(summaries, entry.baseline)
        except ValueError as e:  # the baseline's runs are gone: the table without it, and why
            lines += [f"> **Baseline:** {e}", ""]
            header, rows = table(summaries)
        lines += [markdown(header, rows), ""]
        note = legend(summaries, entry.baseline)
        if note:
            lines += [f"*{note}.*", ""]
        if len(summaries) and not check_metric(summaries, entry.metric):
            from cockpit.analysis.plots import overlay_plot

            p = overlay_plot(plots, summaries, entry.metric, name=f"{entry.slug}.png")
            lines += [f"![{entry.metric}](plots/{p.name})", ""]
        else:
            lines += [f"*No {entry.metric} curve in these runs yet.*", ""]
        return lines
    from cockpit.analysis import report

    ids, out = [rd.id for rd in rds], str(plots / entry.slug)
    rep = (report.lr(runs_dir, None, ids, out=out, charts=False) if entry.show == "lr" else
           report.scaling(runs_dir, None, ids, budget=entry.budget, bootstrap=entry.bootstrap, out=out, charts=False))
    lines += ["```", rep.render(), "```", ""]
    if rep.code == 0:
        lines += [f"![{p.name}](plots/{entry.slug}/{p.name})" for p in sorted((plots / entry.slug).glob("*.png"))]
        lines.append("")
    return lines


def build(root: Path, runs_dir: Path) -> tuple[Path, int]:
    """Write root/FINDINGS.md from root/entries/*.md; (path, number of entries)."""
    edir = root / "entries"
    if not edir.is_dir():
        raise FindingsError(f"{edir}/ does not exist; write a first entry with: cockpit findings new \"TITLE\" "
                            f"--runs RUN RUN")
    paths = sorted(edir.glob("*.md"))
    entries, errors = [], []
    for p in paths:
        try:
            entries.append(read_entry(p))
        except (FindingsError, OSError, UnicodeDecodeError) as e:
            errors.append(str(e))
    if errors:
        raise FindingsError("; ".join(errors) + f" (nothing written: {root / 'FINDINGS.md'} is as it was)")
    body = ["# Findings", "",
            f"<!-- generated by `cockpit findings` from {edir.name}/ on {time.strftime('%Y-%m-%d %H:%M')}; "
            f"edit the entries, not this file: it is rewritten on every build -->", ""]
    if not entries:
        body += ["*No entries yet: `cockpit findings new \"TITLE\" --runs RUN RUN`.*", ""]
    for e in entries:
        body += render_entry(e, runs_dir, root)
    out = root / "FINDINGS.md"
    atomic_write(out, "\n".join(body).rstrip() + "\n")
    return out, len(entries)


def new_entry(root: Path, title: str, runs: list[str], sweep: str | None, show: str, baseline: str | None = None,
              prose: str = "Write the claim here, in your own words.") -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "finding"
    edir = root / "entries"
    edir.mkdir(parents=True, exist_ok=True)
    n = len(list(edir.glob("*.md"))) + 1
    path = edir / f"{n:02d}-{slug}.md"
    if path.exists():
        raise FindingsError(f"{path} exists; edit it, or choose another title")
    head = [f"title = {_toml_str(title)}"]
    head.append(f"sweep = {_toml_str(sweep)}" if sweep else "runs = [" + ", ".join(_toml_str(r) for r in runs) + "]")
    head.append(f"show = \"{show}\"")
    if baseline:
        head.append(f"baseline = {_toml_str(baseline)}")
    path.write_text("+++\n" + "\n".join(head) + "\n+++\n" + prose + "\n", encoding="utf-8")
    return path


def _toml_str(s: str) -> str:
    import tomli_w

    return tomli_w.dumps({"x": s}).split("=", 1)[1].strip()
