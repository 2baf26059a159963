"""The dense kind's spec."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.ffn.spec import FFNSpec
from zoo.kind import register


@register
@dataclass
class DenseSpec(FFNSpec):
    kind: str = "dense"

    def lora_targets(self) -> list[str]:
        return ["up", "gate", "down"] if self.gated else ["up", "down"]

    def grow_refusal(self) -> str:
        return "" if self.rank == 0 and self.activation != "solu" else super().grow_refusal()

    @classmethod
    def bench_variants(cls, d_model, seq):
        return [("dense swiglu", {"kind": "dense", "activation": "silu", "gated": True}),
                ("dense gelu", {"kind": "dense", "activation": "gelu", "gated": False}),
                ("dense low-rank d/4", {"kind": "dense", "activation": "silu", "gated": True,
                                        "rank": max(1, d_model // 4)})]
