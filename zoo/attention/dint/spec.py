"""The dint kind's spec."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.attention.diff.spec import DiffSpec
from zoo.kind import register


@register
@dataclass
class DintSpec(DiffSpec):
    """DINT (Cang et al. 2025): differential attention plus λ·G, G_i the causal mean of the
    first map's rows m <= i, so every row sums to one. Computed as a running mean of the
    first map's outputs, so decoding keeps one vector per head, not the maps."""

    kind: str = "dint"

    def check(self, m, need):
        super().check(m, need)
        need(self.version == 1, "[model.attention] version", "dint has one version (1)")
