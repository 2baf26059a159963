"""The prenorm block's spec."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.block.spec import BlockSpec
from zoo.kind import register


@register
@dataclass
class PreNormSpec(BlockSpec):
    """x + attn(norm(x)), then x + ffn(norm(x)): GPT-2 and LLaMA."""

    kind: str = "prenorm"

    def grow_refusal(self) -> str:
        return ""
