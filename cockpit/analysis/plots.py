"""PNG plots of the analyses (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def scaling_plots(out: Path, points, counted: str, law, budget: float | None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    # loss against compute, one line per size, with the fit's curve for that size
    fig, ax = plt.subplots(figsize=(7, 4.5))
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
    ax.legend(fontsize=8, loc="upper right", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path = out / "scaling_loss_vs_compute.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    # the compute-optimal N and D against compute
    fig, ax = plt.subplots(figsize=(6, 4))
    opt = [law.optimal(x) for x in c]
    ax.plot(c, [o[0] for o in opt], label="N_opt")
    ax.plot(c, [o[1] for o in opt], label="D_opt (tokens)")
    ax.scatter([p.flops for p in points], [p.params(counted) for p in points], s=10, color="C0", alpha=0.5)
    ax.set(xscale="log", yscale="log", xlabel="training FLOPs (6ND)", title="compute-optimal split")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "scaling_frontier.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    return written
