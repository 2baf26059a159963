"""Which torch module builds each kind, and a layer built from a model config. Each kind's
``module.py`` registers its class with ``@builds(Spec)``; a kind's module is imported the first
time a model uses it, so building an mha model never imports mla."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable, TypeVar

from zoo.kind import Regime

if TYPE_CHECKING:
    from torch import nn

    from runspec.config.schema import ModelConfig

_BUILT: dict[type, type] = {}  # spec class -> module class
M = TypeVar("M", bound=type)


def builds(spec: type) -> Callable[[M], M]:
    """Class decorator of a kind's module: it is what ``spec`` builds."""
    def mark(cls: M) -> M:
        _BUILT[spec] = cls
        return cls
    return mark


def module_for(spec: object | type) -> type["nn.Module"]:
    """The module class of a spec (or spec class), importing its kind's module.py when needed."""
    cls = spec if isinstance(spec, type) else type(spec)
    if cls not in _BUILT:
        importlib.import_module(cls.__module__.rsplit(".", 1)[0] + ".module")
    if cls not in _BUILT:
        raise TypeError(f"{cls.__module__.rsplit('.', 1)[0]}/module.py has no @builds({cls.__name__}) class")
    return _BUILT[cls]


def build_block(m: "ModelConfig", layer: int) -> "nn.Module":
    """One layer: the block kind around the attention and feed-forward kinds, all under the
    Regime the block kind decides."""
    regime = Regime.of(m)
    attn = module_for(m.attention)(m, m.attention, layer, regime)
    mlp = module_for(m.ffn)(m, m.ffn, regime)
    return module_for(m.block)(m, m.block, attn, mlp)
