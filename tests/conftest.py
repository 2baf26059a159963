"""Shared fixtures: a private shard cache and runs dir per test session, and tiny configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

ROOT = Path(__file__).resolve().parent.parent
# How long a test waits for a condition (a process to end, a state to be reached) before it gives
# up. Waits end as soon as the condition holds; this bound is for a loaded 2-core machine (CI, a
# laptop training beside the tests), where a step can take ten times as long as on an idle one.
PATIENCE = 600

# The fast tier (-m "not slow") is the pure tests. A test that starts a process (the engine, the
# CLI, a worker, a server) or a TUI must say so with @pytest.mark.slow; one that does not, and
# still starts one, fails here with the reason instead of slowing the fast tier down unnoticed.
_current: dict[str, object] = {"item": None}


def _refuse_unmarked(what: str) -> None:
    item = _current["item"]
    if item is not None and item.get_closest_marker("slow") is None:
        raise RuntimeError(f"{item.nodeid} {what}: mark it @pytest.mark.slow (the fast tier runs no processes "
                           f"and no TUI)")


def pytest_configure(config):
    real_init = subprocess.Popen.__init__

    def guarded_init(self, *args, **kwargs):
        _refuse_unmarked("starts a process")
        real_init(self, *args, **kwargs)

    subprocess.Popen.__init__ = guarded_init
    try:
        from textual.app import App

        real_run_test = App.run_test

        def guarded_run_test(self, *args, **kwargs):
            _refuse_unmarked("runs a TUI")
            return real_run_test(self, *args, **kwargs)

        App.run_test = guarded_run_test
    except ImportError:  # pragma: no cover - textual is a dependency
        pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current["item"] = item  # its fixtures' set-up and tear-down count as the test's own
    yield
    _current["item"] = None


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    # tokenized shards are shared by the whole session (built once), never the user's cache
    os.environ["COCKPIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["WANDB_SILENT"] = "true"
    os.environ.pop("WANDB_MODE", None)
    yield


TINY = {
    "model": {"n_layer": 2, "d_model": 32, "n_head": 2, "block_size": 32},
    "train": {"max_steps": 20, "batch_size": 4, "checkpoint_every": 10},
    "optim": {"warmup_steps": 2, "lr": 3e-3},
    "eval": {"every": 10, "batches": 2, "sample_tokens": 16, "final_max_batches": 4},
    "log": {"every": 5, "wandb": False},
}


def merge(base: dict, extra: dict) -> dict:
    out = {k: dict(v) for k, v in base.items()}
    for section, values in extra.items():
        out.setdefault(section, {}).update(values)
    return out


@pytest.fixture
def write_config(tmp_path):
    """write_config(name, {section: {key: value}}) -> path of a tiny TOML config."""

    def _write(name: str = "tiny", extra: dict | None = None, base: dict = TINY) -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(tomli_w.dumps(merge(base, extra or {})))
        return path

    return _write


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    d = tmp_path / "runs"
    d.mkdir()
    return d


def cockpit(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = PATIENCE, input: str = ""):
    """Run the real `cockpit` CLI in a subprocess (stdin: ``input``)."""
    return subprocess.run([sys.executable, "-m", "cockpit", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, input=input)
