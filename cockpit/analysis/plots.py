"""PNG plots of the analyses (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure(out: Path, size=(7, 4.5), panels: int = 0):
    """(pyplot, figure, axes) drawing off-screen (Agg: no display needed), out/ made; with
    ``panels``, a list of that many axes stacked on one step axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    if panels:
        fig, axes = plt.subplots(panels, 1, figsize=size, sharex=True, squeeze=False)
        return plt, fig, list(axes[:, 0])
    fig, ax = plt.subplots(figsize=size)
    return plt, fig, ax


def _save(plt, fig, ax, path: Path) -> Path:
    """The legend outside the plot (inside it covered data), then written and closed."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def scaling_plots(out: Path, points, counted: str, law, budget: float | None, iso=None) -> list[Path]:
    written = []
    # loss against compute, one line per size, with the fit's curve for that size
    plt, fig, ax = _figure(out)
    sizes = sorted({p.params(counted) for p in points})
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))
    for n, c in zip(sizes, colours):
        pts = sorted((p for p in points if p.params(counted) == n), key=lambda p: p.tokens)
        ax.scatter([p.flops for p in pts], [p.loss for p in pts], color=c, label=f"N = {n:,.0f}")
        d = np.geomspace(min(p.tokens for p in pts) / 2, max(p.tokens for p in pts) * 2, 50)
        ax.plot(d * pts[0].flops_per_token, law.loss(n, d), color=c, alpha=0.6)
    # the frontier: the best loss reachable at each compute (closed form)
    fpt = {p.params(counted): p.flops_per_token / max(p.params(counted), 1) for p in points}
    per_param = float(np.median(list(fpt.values())))  # FLOPs per token per parameter (~6)
    c = np.geomspace(min(p.flops for p in points) / 2, max(p.flops for p in points) * 4, 60)
    frontier = [float(law.loss(*law.optimal(x * 6 / per_param))) for x in c]
    ax.plot(c, frontier, "k--", label="compute-optimal frontier")
    if budget:
        ax.axvline(budget, color="grey", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="training FLOPs", ylabel="final validation loss",
           title=f"loss against compute (N: {counted.replace('_', '-')} parameters)")
    written.append(_save(plt, fig, ax, out / "scaling_loss_vs_compute.png"))
    # the compute-optimal N and D against compute
    plt, fig, ax = _figure(out, (6, 4))
    opt = [law.optimal(x) for x in c]
    ax.plot(c, [o[0] for o in opt], label="N_opt")
    ax.plot(c, [o[1] for o in opt], label="D_opt (tokens)")
    ax.scatter([p.flops for p in points], [p.params(counted) for p in points], s=10, color="C0", alpha=0.5)
    ax.set(xscale="log", yscale="log", xlabel="training FLOPs (6ND)", title="compute-optimal split")
    written.append(_save(plt, fig, ax, out / "scaling_frontier.png"))
    if iso is not None:
        written.append(_isoflop_plot(out, iso, counted))
    return written


def _isoflop_plot(out: Path, iso, counted: str) -> Path:
    plt, fig, ax = _figure(out)
    colours = plt.cm.plasma(np.linspace(0, 0.85, len(iso.curves)))
    for c, col in zip(iso.curves, colours):
        ax.scatter(c.n, c.loss, color=col, label=f"C = {c.flops:.2g}")
        x = np.linspace(np.log(min(c.n)) - 0.2, np.log(max(c.n)) + 0.2, 80)
        ax.plot(np.exp(x), np.polyval(c.coef, x), color=col, alpha=0.6)
        if c.inside:
            ax.plot([c.n_opt], [np.polyval(c.coef, np.log(c.n_opt))], marker="v", color=col, ms=9)
    ax.set(xscale="log", xlabel=f"N ({counted.replace('_', '-')} parameters)", ylabel="final validation loss",
           title="IsoFLOP curves (Approach 2); ▼ = each budget's minimum")
    return _save(plt, fig, ax, out / "scaling_isoflop.png")


def lr_plot(out: Path, fit, suffix: str = "") -> Path:
    plt, fig, ax = _figure(out)
    colours = plt.cm.viridis(np.linspace(0, 0.9, max(len(fit.sizes), 1)))
    for sz, col in zip(fit.sizes, colours):
        ax.plot(sz.lrs, sz.losses, "o-", color=col, alpha=0.8,
                label=f"{sz.params:,} params" + (f" (d {sz.width})" if sz.width else ""))
        if sz.usable:
            ax.plot([sz.lr_opt], [sz.loss_opt], marker="v", color=col, ms=9)
    ax.set(xscale="log", xlabel="learning rate", ylabel="final validation loss",
           title=f"{suffix + ': ' if suffix else ''}loss against learning rate; ▼ = fitted minimum")
    return _save(plt, fig, ax, out / (f"lr_{suffix}.png" if suffix else "lr.png"))


def overlay_plot(out: Path, summaries, metric: str | list[str], name: str | None = None, smooth: float = 0.0,
                 grouped: bool = True, baseline: str | None = None) -> Path:
    """Metrics of several runs by step in one PNG, a panel per metric: each run's curve, or a seed
    group's mean with a band of one standard deviation."""
    from cockpit.analysis.compare import bands

    names = [metric] if isinstance(metric, str) else list(metric)
    plt, fig, axes = _figure(out, (7.5, 3.2 * len(names) + 1.0), panels=len(names))
    for ax, m in zip(axes, names):
        for i, b in enumerate(bands(summaries, m, smooth, grouped, baseline)):
            colour = f"C{i % 10}"
            ax.plot(b.x, b.mean, color=colour, marker="." if len(b.x) < 30 else None,
                    label=b.label + (" (mean ± 1 sd)" if b.low is not None else ""))
            if b.low is not None:
                ax.fill_between(b.x, b.low, b.high, color=colour, alpha=0.2, linewidth=0)
        ax.set(ylabel=m, title=f"{m} by step" + (f" (EMA {smooth})" if smooth else ""))
        if "loss" in m:
            ax.set_yscale("log")
    axes[-1].set_xlabel("step")
    stem = "+".join(x.replace("/", "_") for x in names)
    return _save(plt, fig, axes[0], out / (name or f"compare_{stem}.png"))
