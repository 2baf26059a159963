"""What every kind's spec is made of, torch-free: the registration decorator, the defaults a
kind overrides, and the Regime (prenorm | ngpt, full | simple) the block kind decides for all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig

Need = Callable[[bool, str, str], None]  # need(ok, key, message): raise a ConfigError naming key unless ok

REGISTERED: dict[str, dict[str, type]] = {}  # family -> kind -> spec class, filled by @register
T = TypeVar("T", bound=type)


def register(cls: T) -> T:
    """Class decorator of a kind's spec: ``[model.<cls.family>] kind = cls.kind`` builds it."""
    kinds = REGISTERED.setdefault(cls.family, {})
    if cls.kind in kinds and kinds[cls.kind] is not cls:
        raise TypeError(f"kind '{cls.kind}' of family '{cls.family}' is registered twice "
                        f"({kinds[cls.kind].__module__} and {cls.__module__})")
    kinds[cls.kind] = cls
    return cls


def choices(*values: str) -> Any:
    """Field metadata: the values a string key allows (the config loader checks them)."""
    return {"choices": values}


class ModuleKind:
    """What an attention or ffn kind says about the rest of the product, with the defaults a kind
    overrides: no matrices for LoRA, one plain row in ``cockpit bench modules``. (Whether it can
    grow, ``grow_refusal``, each family says for itself.)"""

    kind: str

    def lora_targets(self) -> list[str]:
        """The names of this kind's matrices that LoRA may adapt ([[stage]] lora.targets)."""
        return []

    @classmethod
    def bench_variants(cls, d_model: int, seq: int) -> list[tuple[str, dict]]:
        """The rows of ``cockpit bench modules`` for this kind: (row name, its [model.<family>] table)."""
        return [(cls.kind, {"kind": cls.kind})]


class ModelKind:
    """What a model-level kind (a memory, a shape) says about the rest of the product, with the
    defaults of the family's plain kind: nothing to check, no parameters of its own, no label,
    no rows in ``cockpit bench modules``' context table."""

    kind: str

    def check(self, m: ModelConfig, need: Need) -> None:
        pass

    def params(self, m: ModelConfig) -> int:
        """Parameters of the kind itself, per layer for a memory (its compression network), in
        all for a shape (its pooling projections)."""
        return 0

    def label(self) -> str:
        return ""

    @classmethod
    def bench_variants(cls, d_model: int, seq: int) -> list[tuple[str, dict]]:
        """Rows of ``cockpit bench modules``' context table: (row name, its [model.<family>] table)."""
        return []


@dataclass(frozen=True)
class Regime:
    """How every module of a model treats its hidden state, decided once by the block kind:
    ``prenorm`` (a residual stream, norms before each sublayer) or ``ngpt`` (the unit sphere);
    nGPT's ``full`` variant trains its per-dimension scales (s_qk, s_u, s_v), ``simple`` keeps
    them fixed. Modules and specs take one Regime instead of two booleans."""

    kind: str = "prenorm"
    variant: str = "full"

    @classmethod
    def of(cls, m: ModelConfig) -> Regime:
        return cls(m.block.kind, getattr(m.block, "variant", "full"))

    @property
    def ngpt(self) -> bool:
        return self.kind == "ngpt"

    @property
    def trains_scales(self) -> bool:
        """nGPT's full variant: the trainable per-dimension scales."""
        return self.ngpt and self.variant == "full"


PRENORM = Regime()


def width_multiplier(m: ModelConfig) -> float:
    """μP's m = d_model / base_width (1 under the standard parametrization, or at the base width)."""
    if m.parametrization != "mup":
        return 1.0
    return m.d_model / (m.base_width or m.d_model)


def head_multiplier(m: ModelConfig) -> float:
    """How much wider a head is than at the base width: the width multiplier when the head size
    follows d_model (head_dim = 0), 1 when it is fixed (head_dim set: heads are added instead)."""
    return width_multiplier(m) if not m.head_dim else 1.0
