"""Training batches built ahead of the step that needs them.

The windows of each step are drawn on the training thread, in order, from the batch
generator (its state is the data position a checkpoint records); a background thread turns
them into tensors: rows gathered from the memory-mapped split, pinned, copied to the device
without blocking. While the device runs step k, the host prepares steps k+1 .. k+depth.
A checkpoint records the generator as it was before the first draw not yet trained on, so
prefetching never moves the data position.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import torch

Batches = list[tuple[torch.Tensor, torch.Tensor]]


class BatchPipeline:
    def __init__(self, generator: torch.Generator, draw: Callable[[], list[torch.Tensor]],
                 build: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], depth: int = 2):
        self.generator, self.draw, self.build, self.depth = generator, draw, build, depth
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="batches") if depth > 0 else None
        self.pending: deque[tuple[torch.Tensor, Future | Batches]] = deque()  # (generator state before, batches)
        self.waited = 0.0  # seconds the training thread spent waiting for batches (read and reset per log)

    def _make(self, offsets: list[torch.Tensor]) -> Batches:
        return [self.build(o) for o in offsets]

    def _fill(self) -> None:
        while len(self.pending) < self.depth:
            before = self.generator.get_state()
            offsets = self.draw()
            self.pending.append((before, self.pool.submit(self._make, offsets)))

    def next(self) -> Batches:
        """The next step's (x, y) micro-batches on the device."""
        t0 = time.perf_counter()
        if self.pool is None:  # depth 0: built here, in the step (the behaviour before prefetching)
            batches = self._make(self.draw())
        else:
            self._fill()
            _, future = self.pending.popleft()
            batches = future.result()
            self._fill()
        self.waited += time.perf_counter() - t0
        return batches

    def position(self) -> torch.Tensor:
        """The generator state a checkpoint records: before any draw not trained on yet."""
        return self.pending[0][0] if self.pending else self.generator.get_state()

    def rewind(self) -> None:
        """Forget what was built ahead (the batch shape may change: a stage, a resume) and
        put the generator back where the next step's draw starts."""
        if self.pending:
            state = self.pending[0][0]
            for _, future in self.pending:
                future.cancel()
            self.pending.clear()
            self.generator.set_state(state)

    def take_waited(self) -> float:
        w, self.waited = self.waited, 0.0
        return w

    def close(self) -> None:
        self.pending.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
