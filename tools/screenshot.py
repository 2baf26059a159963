"""The TUI's pictures for the README and the docs, from Textual's own screenshot support:

    python tools/screenshot.py                # trains two small real runs, then docs/img/tui-<tab>.svg
    python tools/screenshot.py --runs-dir D   # pictures of the runs already in D (nothing trained)

Without --runs-dir it trains two quickstart-sized runs (60 steps each, a minute on 2 CPU cores)
into a temporary directory, so the pictures show real curves, not made-up ones.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SIZE = (120, 36)
TABS = ("queue", "training", "completion", "compare", "corpora")


def train_demo(runs: Path) -> None:
    for name, extra in (("baseline", []), ("rope", ["--set", "model.pos=rope", "--set", "model.norm=rmsnorm"])):
        subprocess.run([sys.executable, "-m", "cockpit", "--headless", "--runs-dir", str(runs), "run",
                        str(ROOT / "examples" / "quickstart.toml"), "--name", name, "--set", "train.max_steps=60",
                        "--set", "eval.every=20", "--set", "log.wandb=false", *extra],
                       check=True, stdout=subprocess.DEVNULL)


async def shoot(runs: Path, corpora: Path, tab: str, out: Path) -> None:
    from cockpit.tui.app import CockpitApp

    ids = sorted(p.name for p in runs.iterdir() if (p / "state.json").exists())
    app = CockpitApp(runs, corpora, tab=tab, run=ids[0] if ids else None, tokenizer="bytes", tick_s=0.2)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.pane(tab)
        deadline = time.monotonic() + 120
        if tab == "compare":
            while len(pane._listed) < min(2, len(ids)) and time.monotonic() < deadline:
                await pilot.pause(0.1)
            pane.pick(ids[:2])
            while len(pane._summaries) < min(2, len(ids)) and time.monotonic() < deadline:
                await pilot.pause(0.1)
        while (pane.polls < 2 or any(w.is_running for w in app.workers)) and time.monotonic() < deadline:
            await pilot.pause(0.1)
        for field in app.query("Input"):
            field.cursor_blink = False
        app.clear_notifications()
        await pilot.pause(0.5)
        out.write_text(app.export_screenshot(title=f"cockpit: {tab}"), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out.resolve()
    given = args.runs_dir.resolve() if args.runs_dir else None
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # relative paths in the pictures, the same on every machine
        runs = given or Path("runs")
        if given is None:
            train_demo(runs)
        corpora = Path("corpora")
        corpora.mkdir()
        (corpora / "notes.txt").write_text("A small corpus for the Corpora tab.\n" * 200, encoding="utf-8")
        for tab in TABS:
            asyncio.run(shoot(runs, corpora, tab, out / f"tui-{tab}.svg"))
            print(f"wrote {out / f'tui-{tab}.svg'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
