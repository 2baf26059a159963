"""``python -m engine coordcheck CONFIG --widths 64,128,256,512``: μP's coordinate check.

For each width, the config's model at that d_model (its heads kept, so each head widens; the
feed-forward at its ratio) is trained a few steps on the config's own data and learning rate,
in the standard parametrization and in μP (base width: the config's base_width, else the
smallest width), and the mean |x| of each layer's output is recorded at every step: the
embedding, every block and the logits. Under μP each layer's size stays flat as the width grows
(the update of a step moves every coordinate by the same order whatever the width); under SP
the logits and the late layers grow with it. The table gives each layer's size at the last step
per width and its slope in log-log (0 is flat: a doubling of width changes nothing); ``--out``
also writes a plot (PNG) and the table as JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from runspec.config.load import load_config

PARAMETRIZATIONS = ("sp", "mup")


def slope(widths: list[int], values: list[float]) -> float:
    """Least-squares slope of log(value) against log(width)."""
    xs = [math.log(w) for w in widths]
    ys = [math.log(max(v, 1e-30)) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def sizes(config: str, overrides: list[str], widths: list[int], steps: int, param: str, base: int,
          seed: int = 0) -> dict[str, list[list[float]]]:
    """{layer: [[mean |x| at step 1..steps] per width]} for one parametrization."""
    from engine.trainer import Trainer

    out: dict[str, list[list[float]]] = {}
    for w in widths:
        sets = [*overrides, f"model.d_model={w}", f"model.parametrization='{param}'", "log.wandb=false",
                "train.compile=false", f"train.seed={seed}", "eval.every=0", "train.checkpoint_every=0"]
        if param == "mup":
            sets += [f"model.base_width={base}", "model.tie_embeddings=false"]
        cfg = load_config(config, sets)
        trainer = Trainer(cfg, log=lambda m: None)
        model = trainer.raw_model
        seen: dict[str, float] = {}
        def keep(name: str):
            def hook(module, inputs, output) -> None:
                t = output.logits if name == "logits" else output
                seen[name] = t.detach().abs().float().mean().item()
            return hook

        hooks = [model.wte.register_forward_hook(keep("embedding")), model.register_forward_hook(keep("logits"))]
        hooks += [block.register_forward_hook(keep(f"block {k}")) for k, block in enumerate(model.blocks)]
        per_step: dict[str, list[float]] = {}
        for _ in range(steps):
            trainer.train_step()
            for name, v in seen.items():
                per_step.setdefault(name, []).append(v)
        for h in hooks:
            h.remove()
        for name, values in per_step.items():
            out.setdefault(name, []).append(values)
        trainer.batches.close()
    return out


def run(config: str, overrides: list[str], widths: list[int], steps: int, params: list[str]) -> dict:
    base = min(widths)
    result = {"config": config, "widths": widths, "steps": steps, "base_width": base, "parametrizations": {}}
    for param in params:
        layers = sizes(config, overrides, widths, steps, param, base)
        last = {name: [per_width[-1] for per_width in runs] for name, runs in layers.items()}
        result["parametrizations"][param] = {
            "last": last, "slope": {name: slope(widths, v) for name, v in last.items()}, "steps": layers}
    return result


def table(result: dict) -> str:
    w = result["widths"]
    lines = [f"coordinate check: {result['config']}, mean |x| of each layer's output after {result['steps']} steps, "
             f"by width (μP's base width {result['base_width']}); slope: log-log against width (0 = flat)"]
    for param, r in result["parametrizations"].items():
        lines.append(f"{'μP' if param == 'mup' else 'SP'}")
        lines.append(f"  {'layer':<12}" + "".join(f"{x:>10}" for x in w) + f"{'slope':>9}")
        for name, values in r["last"].items():
            lines.append(f"  {name:<12}" + "".join(f"{v:>10.4g}" for v in values) + f"{r['slope'][name]:>9.2f}")
        worst = max(r["slope"].items(), key=lambda kv: abs(kv[1]))
        lines.append(f"  steepest: {worst[0]} {worst[1]:+.2f} (x{2 ** worst[1]:.2f} per doubling of width)")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = list(result["parametrizations"])
    fig, axes = plt.subplots(1, len(params), figsize=(5 * len(params), 4), sharey=True, squeeze=False)
    for ax, param in zip(axes[0], params):
        for name, values in result["parametrizations"][param]["last"].items():
            ax.plot(result["widths"], values, marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width (d_model)")
        ax.set_title(f"{'μP' if param == 'mup' else 'SP'}: mean |x| after {result['steps']} steps")
    axes[0][0].set_ylabel("mean |x|")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args) -> int:
    widths = sorted({int(w) for w in args.widths.split(",")})
    params = [args.parametrization] if args.parametrization != "both" else list(PARAMETRIZATIONS)
    result = run(args.config, args.set or [], widths, args.steps, params)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "coordcheck.json").write_text(json.dumps(result, indent=1))
        plot(result, out / "coordcheck.png")
    print(json.dumps(result) if args.json else table(result) + (f"\nwrote {args.out}/coordcheck.png and "
                                                                 f"coordcheck.json" if args.out else ""))
    return 0
