"""The benchmarks that go through the product itself call the real CLI: one helper for them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cockpit(runs: Path, *args: str) -> str:
    """``cockpit --runs-dir RUNS ARGS`` from the repository's root; its stdout, or exit with its output."""
    out = subprocess.run([sys.executable, "-m", "cockpit", "--runs-dir", str(runs), *args], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"cockpit {' '.join(args)} failed ({out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return out.stdout
