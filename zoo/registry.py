"""The zoo's kinds, found by their folders: importing this module imports every
``zoo/<family>/<kind>/spec.py`` (torch-free), whose spec registers itself. ``FAMILIES`` lists
each family's kinds with the family's default first, then by name."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from pathlib import Path

from zoo.attention.spec import AttentionSpec
from zoo.block.spec import BlockSpec
from zoo.ffn.spec import FFNSpec
from zoo.kind import REGISTERED
from zoo.memory.spec import MemorySpec
from zoo.shape.spec import ShapeSpec

BASES: dict[str, type] = {"attention": AttentionSpec, "ffn": FFNSpec, "block": BlockSpec, "memory": MemorySpec,
                          "shape": ShapeSpec}
ROOT = Path(__file__).resolve().parent


def _default(base: type) -> str:
    return next(f.default for f in dataclasses.fields(base) if f.name == "kind")


def _discover() -> dict[str, dict[str, type]]:
    for family in BASES:
        for info in sorted(pkgutil.iter_modules([str(ROOT / family)]), key=lambda i: i.name):
            if not info.ispkg:
                continue
            before = {k: set(v) for k, v in REGISTERED.items()}
            importlib.import_module(f"zoo.{family}.{info.name}.spec")
            new = set(REGISTERED.get(family, {})) - before.get(family, set())
            if info.name not in REGISTERED.get(family, {}) or (new and new != {info.name}):
                raise TypeError(f"zoo/{family}/{info.name}/spec.py must register one spec with "
                                f"kind = '{info.name}' (@register)")
    out = {}
    for family, base in BASES.items():
        kinds = REGISTERED.get(family, {})
        default = _default(base)
        out[family] = {k: kinds[k] for k in [default] + sorted(set(kinds) - {default})}
    return out


FAMILIES: dict[str, dict[str, type]] = _discover()
DEFAULT_KIND: dict[str, str] = {family: _default(base) for family, base in BASES.items()}


def spec_keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def kind_of_key(family: str, key: str) -> list[str]:
    """Which kinds of a family have ``key`` (for 'that key belongs to kind X' hints)."""
    return [k for k, cls in FAMILIES[family].items() if key in spec_keys(cls)]
