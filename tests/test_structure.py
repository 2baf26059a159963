"""The house's layers and rules, from the code: import-linter's contracts (pyproject.toml) and
tools/check_structure.py (cycles, one atomic write, one lock, one state writer)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _structure():
    spec = importlib.util.spec_from_file_location("check_structure", ROOT / "tools" / "check_structure.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_import_contracts_are_kept(monkeypatch):
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_no_cycles_one_atomic_write_one_lock_one_state_writer():
    assert _structure().problems() == []


def test_the_checks_can_fail(tmp_path, monkeypatch):
    """A stray os.replace outside runspec/fs.py is reported (the rule is not vacuous)."""
    mod = _structure()
    pkg = tmp_path / "cockpit"
    pkg.mkdir()
    (pkg / "stray.py").write_text("import os\nos.replace('a', 'b')\n")
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    monkeypatch.setattr(mod, "PACKAGES", ("cockpit",))
    assert mod.misplaced_patterns() == ["cockpit/stray.py:2: '\\\\bos\\\\.replace\\\\(' belongs only in runspec/fs.py"]


def test_a_metric_name_spelled_outside_the_registry_is_reported(tmp_path, monkeypatch):
    mod = _structure()
    pkg = tmp_path / "cockpit"
    pkg.mkdir()
    (pkg / "pane.py").write_text('"""Shows train/loss (a docstring may name it)."""\n'
                                 'LOSS = "train/loss"\nGRADS = f"debug/grad_norm/{1}"\n')
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    monkeypatch.setattr(mod, "PACKAGES", ("cockpit",))
    assert [p.split(": ")[0] for p in mod.metric_literals()] == ["cockpit/pane.py:2", "cockpit/pane.py:3"]
