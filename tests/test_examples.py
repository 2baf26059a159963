"""Every shipped example config either runs as shipped, offline, or says in its first comment
which data (or encoding, or parent run) it needs and the command that produces it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT, cockpit

from runspec.config.load import load_config

EXAMPLES = sorted((ROOT / "examples").glob("**/*.toml"))
RUN_CONFIGS = [p for p in EXAMPLES if "[sweep]" not in p.read_text() and "corpora" not in p.parts]
COMMAND = re.compile(r"curl |wget |cockpit |python |--set data\.path")


def first_comment(path: Path) -> str:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# "))
    return " ".join(lines)


def needs(path: Path) -> list[str]:
    """What a config needs that a fresh clone, offline, does not have."""
    cfg = load_config(path)
    out = []
    if not cfg.data.path.startswith("builtin:"):
        out.append(cfg.data.path)
    if cfg.data.tokenizer != "bytes":
        out.append(cfg.data.tokenizer)  # a tiktoken encoding, downloaded on first use
    if cfg.init.from_:
        out.append(cfg.init.from_)  # a parent run
    return out


def runs_offline(path: Path) -> bool:
    return not needs(path) and not load_config(path).stage


@pytest.mark.parametrize("path", [p for p in RUN_CONFIGS if needs(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_a_config_that_needs_something_says_what_and_how_in_its_first_comment(path):
    head = first_comment(path)
    for thing in needs(path):
        assert thing in head, f"{path}: its first comment does not name {thing!r}"
    assert COMMAND.search(head), f"{path}: its first comment gives no command that produces what it needs"


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in RUN_CONFIGS if runs_offline(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_a_config_that_needs_nothing_trains_as_shipped(path, tmp_path):
    """A few steps, on CPU, with overrides that shorten the run and nothing else."""
    short = ["train.max_steps=2", "train.batch_size=2", "train.checkpoint_every=0", "train.device='cpu'",
             "train.precision='fp32'", "train.compile=false", "optim.warmup_steps=1", "eval.every=0",
             "eval.final_max_batches=1", "eval.sample_tokens=0", "log.wandb=false"]
    args = [a for s in short for a in ("--set", s)]
    r = cockpit("--headless", "--runs-dir", str(tmp_path / "runs"), "run", str(path), *args,
                env={"COCKPIT_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    assert "[completed] step 2/2" in r.stdout
