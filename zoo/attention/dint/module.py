"""The dint kind: differential attention plus λ·G, the causal mean of the first map
(zoo/attention/diff/module.py explains both)."""

from __future__ import annotations

from zoo.attention.diff.module import Diff
from zoo.attention.dint.spec import DintSpec
from zoo.modules import builds


@builds(DintSpec)
class Dint(Diff):
    integral = True
