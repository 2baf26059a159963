"""The stop flag of a training process: set by SIGTERM/SIGINT, read by the loop between steps,
so a stop lands on a step boundary and its checkpoint is exact. Torch-free, so
``python -m engine train`` installs it before importing torch: a stop sent while the engine
is still starting is kept, not the default action of killing it."""

from __future__ import annotations

import signal


class StopFlag:
    def __init__(self) -> None:
        self.signal: str | None = None
        self.count = 0  # how many stop signals arrived (a launcher escalates on the second)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signal = signal.Signals(signum).name
        self.count += 1
