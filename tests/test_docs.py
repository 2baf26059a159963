"""The docs cannot drift from the code: the reference pages are what tools/gen_reference.py
makes of the schema, the parsers, the registries, the server's routes and the lifecycle table;
the README stays a page; nothing in the project names a file outside the repository."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import gen_reference  # noqa: E402


def test_the_committed_reference_pages_are_what_the_code_generates(capsys):
    assert gen_reference.main(["--check"]) == 0, capsys.readouterr().err


def test_a_page_that_differs_from_the_code_is_named(tmp_path, capsys):
    pages = tmp_path / "reference"
    shutil.copytree(ROOT / "docs" / "reference", pages)
    config = pages / "config.md"
    config.write_text(config.read_text(encoding="utf-8").replace("| `max_steps` |", "| `max_stepz` |"), encoding="utf-8")
    (pages / "metrics.md").unlink()
    assert gen_reference.main(["--check", "--out", str(pages)]) == 1
    err = capsys.readouterr().err
    assert "config.md" in err and "metrics.md" in err and "cli.md" not in err


def test_every_config_key_and_command_is_in_the_reference():
    import dataclasses

    from runspec.config.schema import RunConfig

    config = (ROOT / "docs" / "reference" / "config.md").read_text(encoding="utf-8")
    for section in dataclasses.fields(RunConfig):
        cls = section.type if isinstance(section.type, type) else None
        if cls is None or not dataclasses.is_dataclass(cls):
            continue
        for f in dataclasses.fields(cls):
            if not dataclasses.is_dataclass(f.type):
                assert f"| `{f.metadata.get('key', f.name)}` |" in config, (section.name, f.name)
    cli = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    from cockpit.commands import ORDER

    for name in ORDER:
        assert f"## cockpit {name}\n" in cli, name


def test_the_readme_is_a_page_and_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 220
    commands = [line for line in lines if line.startswith("pip install -e ")]
    assert commands[0].startswith("pip install -e . && cockpit --headless run examples/quickstart.toml")
    assert commands[1].startswith("pip install -e '.[test]' && python -m pytest -q")


def test_nothing_names_a_file_outside_the_repository():
    outside = re.compile(r"\.\./shared|\b(DESIGN|RESEARCH|TRIED)\.md\b")
    found = []
    for pattern in ("**/*.py", "**/*.md", "**/*.toml", "**/*.yml"):
        for path in ROOT.glob(pattern):
            if any(part in (".venv", ".git", "site", "node_modules") or part.startswith(".") for part in
                   path.relative_to(ROOT).parts[:-1]):
                continue
            if path.name == "test_docs.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if outside.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:80]}")
    assert not found, "\n".join(found)
