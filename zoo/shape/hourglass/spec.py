"""The hourglass (Nawrot et al. 2021, "Hierarchical Transformers Are More Efficient Language
Models"; Funnel-Transformer's pyramid, made causal)."""

from __future__ import annotations

from dataclasses import dataclass, field

from zoo.kind import choices, register
from zoo.shape.spec import ShapeSpec

POOLS = ("mean", "linear")


@register
@dataclass
class HourglassSpec(ShapeSpec):
    """Levels of layers, each at a shortening factor of the full sequence: ``shorten = [1, 3, 1]``
    runs the first level at full length, the second on every third position, the last at full
    length again. Going in, the sequence is shifted right by k - 1 and pooled k to one, so a
    shortened position sees no token after the last one it covers; coming out, each shortened
    position is repeated k times and added to the residual of what the shortening lost
    (x - its own pooled-and-repeated self), so factors of 1 everywhere are exactly the plain stack."""

    kind: str = "hourglass"
    shorten: list[int] = field(default_factory=lambda: [1, 2, 1])  # each level's factor of the full length: rises, then falls back the same way
    layers: list[int] = field(default_factory=list)  # layers per level; []: n_layer split evenly (the rest to the middle)
    pool: str = field(default="mean", metadata=choices(*POOLS))  # mean: no parameters; linear: a learned d*k -> d projection

    def levels(self, m) -> list[int]:
        if self.layers:
            return list(self.layers)
        n = len(self.shorten)
        base, rest = divmod(m.n_layer, n)
        out = [base] * n
        out[n // 2] += rest
        return out

    def factors(self, m) -> list[int]:
        return [k for k, count in zip(self.shorten, self.levels(m)) for _ in range(count)]

    def steps(self) -> list[int]:
        """The ratio between each level and the next one in (the first half of shorten)."""
        half = self.shorten[: len(self.shorten) // 2 + 1]
        return [b // a for a, b in zip(half, half[1:])]

    def check(self, m, need):
        w = "[model.shape]"
        s = self.shorten
        need(len(s) % 2 == 1 and s == s[::-1] and s[0] == 1, f"{w} shorten",
             f"found {s}; the factors must start and end at 1 and fall back the way they rose, e.g. [1, 3, 1] "
             f"or [1, 2, 4, 2, 1]")
        half = s[: len(s) // 2 + 1]
        need(all(k >= 1 for k in s) and all(b % a == 0 and b >= a for a, b in zip(half, half[1:])), f"{w} shorten",
             f"found {s}; each level's factor must be a multiple of the one outside it")
        levels = self.levels(m)
        need(len(levels) == len(s), f"{w} layers", f"found {len(levels)} levels of layers for {len(s)} factors")
        need(all(n >= 0 for n in levels) and sum(levels) == m.n_layer, f"{w} layers",
             f"found {levels}; the layers per level must add up to n_layer ({m.n_layer})")
        need(levels[0] >= 1 and levels[-1] >= 1, f"{w} layers",
             f"found {levels}; the outer levels need a layer each (they read and write the full-length sequence)")
        need(m.pos != "learned_per_layer", "[model] pos", "learned_per_layer adds a full-length table at every "
                                                          "layer; an hourglass's middle layers are shorter (use rope)")
        need(m.block.kind == "prenorm", f"{w} kind", f"the hourglass needs block kind 'prenorm' (found '{m.block.kind}')")

    def params(self, m):
        if self.pool != "linear":
            return 0
        return sum(m.d_model * m.d_model * r for r in self.steps() if r > 1)

    def label(self) -> str:
        return "hg" + "-".join(str(k) for k in self.shorten)

    @classmethod
    def bench_variants(cls, d_model, seq):
        return [("hourglass 1-2-1", {"kind": "hourglass", "shorten": [1, 2, 1], "layers": [1, 2, 1]}),
                ("hourglass 1-4-1", {"kind": "hourglass", "shorten": [1, 4, 1], "layers": [1, 2, 1]})]

    def grow_refusal(self) -> str:
        return "growth needs [model.shape] kind = 'stack' (an hourglass's levels would not line up)"
