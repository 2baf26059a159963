"""The answers of ``cockpit analyze scaling`` and ``cockpit analyze lr`` as objects: a Report
holds the lines the command prints, the notes it writes to stderr (runs left out, why it could not
fit) and its exit code, so the CLI prints it, the findings document quotes it and the Compare tab
shows it, none of them capturing stdout."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from cockpit.format import human


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)  # what the command prints
    notes: list[str] = field(default_factory=list)  # left out / errors (stderr)
    code: int = 0

    def say(self, text: str) -> None:
        self.lines.append(text)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def fail(self) -> "Report":
        self.code = 2
        return self

    def render(self, notes: bool = True) -> str:
        """The text the command would print, notes first (as they come first on a terminal)."""
        return "\n".join([*(self.notes if notes else []), *self.lines]).rstrip()


def _interval(lo: float, hi: float, fmt) -> str:
    return f"[{fmt(lo)}, {fmt(hi)}]"


def scaling(runs_dir: Path, sweep: str | None, runs: list[str], *, params: str = "non_embedding",
            bootstrap: int = 100, budget: float | None = None, hours: float | None = None, out: str | None = None,
            charts: bool = True) -> Report:
    """The scaling fit of finished runs (a sweep's or the runs named), for a budget in FLOPs or hours."""
    from cockpit.analysis.points import gather, left_out_notes
    from cockpit.analysis.scaling import fit_isoflop, fit_law

    rep = Report()
    label, points, skipped = gather(runs_dir, sweep, runs)
    for line in left_out_notes(skipped):
        rep.note(line)
    if len(points) < 5:
        rep.note(f"error: {len(points)} finished run{'s' if len(points) != 1 else ''} in {label}; a fit of 5 constants needs at least 5, and several sizes "
                 f"at several token budgets to be worth trusting")
        return rep.fail()
    n = [p.params(params) for p in points]
    d = [p.tokens for p in points]
    loss = [p.loss for p in points]
    fit = fit_law(n, d, loss, bootstrap=bootstrap)
    law = fit.law
    rep.say(f"scaling fit over {len(points)} runs ({label}); N = {params.replace('_', '-')} parameters "
            f"({human(min(n))} .. {human(max(n))}), D = tokens trained ({human(min(d))} .. {human(max(d))})")
    rep.say("L(N, D) = E + A / N^alpha + B / D^beta   (summed Huber on log-loss, L-BFGS, "
            f"90% intervals from {bootstrap} bootstrap refits)")
    for name in ("E", "A", "B", "alpha", "beta"):
        v, (lo, hi) = getattr(law, name), fit.intervals[name]
        rep.say(f"  {name:5s} = {v:10.4g}   {_interval(lo, hi, lambda x: f'{x:.4g}')}")
    resid = [math.log(l_) - math.log(float(law.loss(a, b))) for a, b, l_ in zip(n, d, loss)]
    rep.say(f"  fit residuals (log-loss): rms {statistics.pstdev(resid) if len(resid) > 1 else 0:.4f}, "
            f"max {max(abs(r) for r in resid):.4f}")
    how = "given" if budget else ""
    if not budget and hours:
        rates = [p.tokens_per_s * p.flops_per_token for p in points if p.tokens_per_s]
        if not rates:
            rep.note("error: the runs recorded no throughput; give --budget in FLOPs instead")
            return rep.fail()
        rate = statistics.median(rates)
        budget, how = hours * 3600 * rate, f"{hours:g} h at the runs' median {rate:.3g} FLOP/s"
    if budget:
        n_opt, d_opt = law.optimal(budget)
        (n_lo, n_hi), (d_lo, d_hi) = fit.optimal_interval(budget)
        rep.say(f"compute-optimal for {budget:.3g} FLOPs ({how}): N = {human(n_opt)} {_interval(n_lo, n_hi, human)} "
                f"{params.replace('_', '-')} parameters, D = {human(d_opt)} tokens {_interval(d_lo, d_hi, human)}, "
                f"D/N = {d_opt / n_opt:.1f}; predicted loss {float(law.loss(n_opt, d_opt)):.4f}")
        for w in trust_warnings(n, d, n_opt, (n_lo, n_hi)):
            rep.say(f"  caution: {w}")
    else:
        for w in trust_warnings(n, d, None, None):
            rep.say(f"  caution: {w}")
        rep.say("give --budget FLOPS or --hours H for the compute-optimal N and D")
    flops = [p.flops for p in points]
    iso = fit_isoflop(n, d, flops, loss)
    isoflop_lines(rep, iso, budget, params)
    if charts:
        rep.say("")
        rep.say(scaling_chart(points, params))
        if iso:
            rep.say("")
            rep.say(isoflop_chart(iso))
    if out:
        from cockpit.analysis.plots import scaling_plots

        for path in scaling_plots(Path(out), points, params, law, budget, iso):
            rep.say(f"wrote {path}")
    return rep


def isoflop_lines(rep: Report, iso, budget: float | None, counted: str) -> None:
    """Approach 2's answer beside Approach 3's (they should roughly agree when both are trustworthy)."""
    if iso is None:
        rep.say("IsoFLOP curves (Approach 2): none — no 3 sizes share a compute budget (within 15%); a sweep "
                "with a flops axis makes them")
        return
    rep.say(f"IsoFLOP curves (Approach 2): {len(iso.curves)} compute budget{'s' if len(iso.curves) != 1 else ''}; "
            f"a parabola of loss in ln N per budget")
    for c in iso.curves:
        where = ("inside the sizes trained" if c.inside else
                 f"the {c.edge} size is best: the minimum is not bracketed (train "
                 f"{'smaller' if c.edge == 'smallest' else 'larger'} sizes at this budget); not used" if c.edge else
                 "no minimum (loss falls all the way)" if not math.isfinite(c.n_opt) else
                 "outside the sizes trained: not used")
        at = f"N_opt = {human(c.n_opt)}, D_opt = {human(c.d_opt)}" if math.isfinite(c.n_opt) else ""
        rep.say(f"  C = {c.flops:.3g}: {len(c.n)} runs, {human(min(c.n))} .. {human(max(c.n))}; {at}"
                f"{', ' if at else ''}{where}")
    if math.isfinite(iso.a):
        rep.say(f"  N_opt ∝ C^{iso.a:.3f}, D_opt ∝ C^{iso.b:.3f} (Chinchilla's Approach 2: 0.49, 0.51)")
        if budget:
            n_opt, d_opt = iso.optimal(budget)
            rep.say(f"  compute-optimal for {budget:.3g} FLOPs by Approach 2: N = {human(n_opt)} "
                    f"{counted.replace('_', '-')} parameters, D = {human(d_opt)} tokens")
    else:
        rep.say("  exponents need 2 or more budgets whose minimum lies inside the sizes trained")


def scaling_chart(points, counted: str) -> str:
    from cockpit.analysis.termplot import Series, chart

    sizes = sorted({p.params(counted) for p in points})
    series = []
    for size in sizes:
        pts = sorted((p for p in points if p.params(counted) == size), key=lambda p: p.flops)
        series.append(Series(f"N = {human(size)}", [p.flops for p in pts], [p.loss for p in pts]))
    return chart(series, title="final validation loss against compute, one line per size", xlabel="training FLOPs",
                 ylabel="loss", xlog=True, ylog=True)


def isoflop_chart(iso) -> str:
    from cockpit.analysis.termplot import Series, chart

    series = []
    for c in iso.curves:
        pts = sorted(zip(c.n, c.loss))
        series.append(Series(f"C = {c.flops:.3g}", [a for a, _ in pts], [b for _, b in pts]))
    return chart(series, title="IsoFLOP curves: loss against N at fixed compute", xlabel="N", ylabel="loss",
                 xlog=True, ylog=True)


def trust_warnings(n: list[float], d: list[float], n_opt: float | None, n_iv) -> list[str]:
    out = []
    sizes = sorted(set(n))
    budgets = min(len({b for a, b in zip(n, d) if a == s}) for s in sizes)  # token budgets per size
    if len(sizes) < 3:
        out.append(f"only {len(sizes)} model sizes: the N exponent is barely determined; use 3 or more")
    elif max(sizes) / min(sizes) < 4:
        out.append(f"the sizes span only {max(sizes) / min(sizes):.2f}x; a span of 4x or more pins the exponents")
    if budgets < 3:
        out.append(f"some size has only {budgets} token budget{'s' if budgets > 1 else ''}: the D exponent is barely "
                   f"determined; train each size at 3 or more")
    if n_opt is not None:
        if n_opt > 4 * max(sizes) or n_opt < min(sizes) / 4:
            out.append(f"N_opt is far outside the sizes trained ({human(min(sizes))} .. {human(max(sizes))}): "
                       f"an extrapolation; train a size near it")
        lo, hi = n_iv
        if lo > 0 and hi / lo > 3:
            out.append(f"the interval of N_opt spans {hi / lo:.1f}x: more runs (sizes x budgets) are needed to trust it")
    return out


def lr(runs_dir: Path, sweep: str | None, runs: list[str], *, out: str | None = None,
       charts: bool = True) -> Report:
    """The best learning rate per size of finished runs, and its exponent in width."""
    from cockpit.analysis.lr import fit_lr
    from cockpit.analysis.points import gather, left_out_notes

    rep = Report()

    label, points, skipped = gather(runs_dir, sweep, runs)
    for line in left_out_notes(skipped):
        rep.note(line)
    for p in points:
        if not math.isfinite(p.loss):
            rep.note(f"left out: {p.run}: final loss {p.loss} (diverged: this rate is too high)")
    points = [p for p in points if math.isfinite(p.loss)]
    if len({p.lr for p in points}) < 2:
        rep.note(f"error: {len(points)} finished run{'s' if len(points) != 1 else ''} in {label} with "
                 f"{len({p.lr for p in points})} learning rate(s); sweep optim.lr over 3 or more values per size "
                 f"(see examples/sweeps/lr.toml)")
        return rep.fail()
    kinds = sorted({p.parametrization for p in points})
    if len(kinds) > 1:  # SP and μP side by side: does the best rate stay put as the width grows?
        return _lr_side_by_side(rep, label, points, charts, out)
    fit = fit_lr(points)
    rep.say(f"learning rate over {len(points)} runs ({label}): a parabola of final validation loss in log10(lr) "
            f"per size")
    rep.say(f"  {'size':>8}  {'width':>5}  {'rates':>5}  {'best tried':>10}  {'fitted min':>10}  {'loss there':>10}")
    for sz in fit.sizes:
        opt = f"{sz.lr_opt:10.3g}" if math.isfinite(sz.lr_opt) else f"{'-':>10}"
        rep.say(f"  {human(sz.params):>8}  {sz.width or '-':>5}  {len(set(sz.lrs)):>5}  {sz.best_tried:10.3g}  {opt}  "
                f"{sz.loss_opt:10.4f}" + (f"   ({sz.why})" if sz.why else ""))
    for size in sorted({p.params_total for p in points}):
        toks = [p.tokens for p in points if p.params_total == size and p.lr is not None]
        if toks and max(toks) > 1.1 * min(toks):
            rep.say(f"  caution: the runs of size {human(size)} trained different token counts ({human(min(toks))} .. "
                    f"{human(max(toks))}): their rates are not compared like for like")
    if math.isfinite(fit.exponent):
        rep.say(f"  lr_opt ∝ width^{fit.exponent:.2f} over widths "
                f"{', '.join(str(s.width) for s in fit.sizes if s.usable)} (μP predicts -1 for Adam's hidden "
                f"matrices; standard practice lands between -1 and -0.5)")
        for w in (256, 384, 512, 768):
            rep.say(f"    predicted at d_model {w}: {fit.predict(w):.3g}")
    else:
        rep.say("  how lr moves with width needs fitted minima at 2 or more widths")
    if charts:
        from cockpit.analysis.termplot import Series, chart

        rep.say("")
        rep.say(chart([Series(f"N = {human(sz.params)}" + (f" (d {sz.width})" if sz.width else ""), sz.lrs, sz.losses)
                       for sz in fit.sizes], title="final validation loss against learning rate", xlabel="lr",
                      ylabel="loss", xlog=True))
    if out:
        from cockpit.analysis.plots import lr_plot

        rep.say(f"wrote {lr_plot(Path(out), fit)}")
    return rep


def _lr_side_by_side(rep: Report, label: str, points: list, charts: bool, out: str | None) -> Report:
    """The best learning rate per width in each parametrization, and how far it moves across the
    widths (in factors of the rates tried: μP's promise is that it does not)."""
    from cockpit.analysis.lr import fit_lr

    fits = {k: fit_lr([p for p in points if p.parametrization == k]) for k in ("sp", "mup")}
    name = {"sp": "SP", "mup": "μP"}
    rep.say(f"learning rate per width, standard parametrization against μP, over {len(points)} runs ({label})")
    widths = sorted({sz.width for f in fits.values() for sz in f.sizes if sz.width})
    rep.say(f"  {'width':>6}  {'SP best tried':>13}  {'SP fitted':>10}  {'μP best tried':>13}  {'μP fitted':>10}")
    for w in widths:
        cells = []
        for k in ("sp", "mup"):
            sz = next((s for s in fits[k].sizes if s.width == w), None)
            cells += [f"{sz.best_tried:.3g}" if sz else "-",
                      f"{sz.lr_opt:.3g}" if sz and sz.usable else "-"]
        rep.say(f"  {w:>6}  {cells[0]:>13}  {cells[1]:>10}  {cells[2]:>13}  {cells[3]:>10}")
    for k in ("sp", "mup"):
        best = [s.best_tried for s in sorted(fits[k].sizes, key=lambda s: s.width or 0)]
        if len(best) >= 2:
            grid = sorted({p.lr for p in points if p.parametrization == k})
            steps = [abs(grid.index(b) - grid.index(best[0])) for b in best]
            rep.say(f"  {name[k]}: the best rate tried moves {max(steps)} grid step(s) across widths "
                    f"{min(widths)}..{max(widths)} ({best[0]:.3g} -> {best[-1]:.3g})")
    if charts:
        from cockpit.analysis.termplot import Series, chart

        for k in ("sp", "mup"):
            rep.say("")
            rep.say(chart([Series(f"d {sz.width}", sz.lrs, sz.losses) for sz in fits[k].sizes],
                          title=f"{name[k]}: final validation loss against learning rate", xlabel="lr",
                          ylabel="loss", xlog=True))
    if out:
        from cockpit.analysis.plots import lr_plot

        for k in ("sp", "mup"):
            rep.say(f"wrote {lr_plot(Path(out), fits[k], suffix=k)}")
    return rep
