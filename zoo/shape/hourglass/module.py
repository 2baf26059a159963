"""The hourglass: levels of blocks, the inner ones over a shortened sequence.

Going in by a ratio r, position t of the shorter sequence pools the full-length states
t*r - r + 1 .. t*r (the sequence shifted right by r - 1 before pooling: it sees no later token).
Coming out, full-length position q takes the inner output at q // r (which covers positions up
to r * (q // r) <= q) plus what the pooling lost of its own state (x_q minus the pooled group it
belongs to), so a ratio of 1 changes nothing at all.

Decoding keeps, at each ratio, the last r - 1 states (the next group's start), the last group's
pooled state and inner output; a group is pooled and sent in the moment its last position
arrives. That computes, token by token, what the full pass does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.modules import builds
from zoo.shape.hourglass.spec import HourglassSpec
from zoo.shape.module import ShapeModule


class _Node:
    """Decoding state at one ratio > 1."""

    def __init__(self) -> None:
        self.buf: torch.Tensor | None = None  # the last r - 1 full-length states (zeros before the start)
        self.pooled: torch.Tensor | None = None  # the last complete group's pooled state (B, 1, d)
        self.inner: torch.Tensor | None = None  # and what the inner levels made of it (B, 1, d)
        self.pos = 0  # full-length positions seen at this ratio


@builds(HourglassSpec)
class Hourglass(ShapeModule):
    def __init__(self, m, spec: HourglassSpec):
        super().__init__()
        self.levels = spec.levels(m)
        self.ratios = spec.steps()  # ratio from level i to level i + 1, for the levels going in
        starts, at = [], 0
        for n in self.levels:
            starts.append(at)
            at += n
        self.starts = starts
        d = m.d_model
        # linear pooling: one d*r -> d projection per ratio > 1
        self.pools = nn.ModuleList(
            nn.Linear(d * r, d, bias=False) if spec.pool == "linear" and r > 1 else nn.Identity() for r in self.ratios)

    def _blocks(self, level: int) -> range:
        return range(self.starts[level], self.starts[level] + self.levels[level])

    def _pool(self, i: int, groups: torch.Tensor) -> torch.Tensor:
        """(B, n, r, d) groups -> (B, n, d)."""
        pool = self.pools[i]
        if isinstance(pool, nn.Linear):
            return pool(groups.flatten(2))
        return groups.mean(2)

    def new_state(self):
        return [_Node() for _ in self.ratios]

    def forward(self, blocks, x, cache, collect, after=None):
        state = getattr(cache, "shape_state", None) if cache is not None else None
        return self._level(0, blocks, x, cache, collect, state)

    def _run(self, level: int, blocks, x, cache, collect):
        for i in self._blocks(level):
            x = blocks[i](x, cache[i] if cache is not None else None, collect)
        return x

    def _level(self, i: int, blocks, x, cache, collect, state):
        n = len(self.levels)
        x = self._run(i, blocks, x, cache, collect)
        if i == n // 2:  # the innermost level
            return x
        r = self.ratios[i]
        if r == 1:
            y = self._level(i + 1, blocks, x, cache, collect, state)
        elif state is None:
            y = self._shortened(i, r, blocks, x, cache, collect)
        else:
            y = self._shortened_step(i, r, blocks, x, cache, collect, state)
        return self._run(n - 1 - i, blocks, y, cache, collect)

    def _shortened(self, i: int, r: int, blocks, x, cache, collect):
        B, T, d = x.shape
        short = -(-T // r)
        shifted = F.pad(x, (0, 0, r - 1, short * r - T))  # r - 1 zeros in front, the end padded to whole groups
        pooled = self._pool(i, shifted[:, : short * r].view(B, short, r, d))
        inner = self._level(i + 1, blocks, pooled, cache, collect, None)
        up = lambda s: s.repeat_interleave(r, dim=1)[:, :T]  # noqa: E731
        return up(inner) + (x - up(pooled))

    def _shortened_step(self, i: int, r: int, blocks, x, cache, collect, state):
        node: _Node = state[i]
        B, T, d = x.shape
        if node.buf is None:
            node.buf = x.new_zeros(B, r - 1, d)
        full = torch.cat((node.buf, x), dim=1)  # full[j] is position node.pos - (r - 1) + j
        first = -(-node.pos // r)  # the first group whose last position (t * r) is in this call
        done = [t for t in range(first, (node.pos + T - 1) // r + 1)]
        pooled_new = inner_new = None
        if done:
            groups = torch.stack([full[:, t * r - node.pos: t * r - node.pos + r] for t in done], dim=1)
            pooled_new = self._pool(i, groups)
            inner_new = self._level(i + 1, blocks, pooled_new, cache, collect, state)
        rows = []
        for q in range(node.pos, node.pos + T):
            t = q // r
            if done and t >= done[0]:
                k = t - done[0]
                p, u = pooled_new[:, k: k + 1], inner_new[:, k: k + 1]
            else:
                p, u = node.pooled, node.inner
            rows.append(u + (x[:, q - node.pos: q - node.pos + 1] - p))
        if done:
            node.pooled, node.inner = pooled_new[:, -1:], inner_new[:, -1:]
        node.buf = full[:, full.size(1) - (r - 1):] if r > 1 else full[:, :0]
        node.pos += T
        return torch.cat(rows, dim=1)
