"""What every block kind shares (torch-free); each kind's own spec is in its folder
(``zoo/block/<kind>/spec.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from runspec.config.schema import ModelConfig

@dataclass
class BlockSpec:
    family: ClassVar[str] = "block"
    kind: str = "prenorm"

    def check(self, m, need):
        pass

    def params(self, m: ModelConfig) -> int:
        return 2 * m.d_model * (2 if m.norm == "layernorm" and m.bias else 1)

    def label(self) -> str:
        return self.kind

    def grow_refusal(self) -> str:
        """Why a model with this block cannot grow; '' when it can."""
        return f"growth needs block = 'prenorm' (found '{self.kind}')"
