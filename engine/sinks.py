"""Where a run's records go: events.jsonl (what the cockpit reads), wandb and TensorBoard (when
on) and the engine's log (engine.log, what a person reads). One call per record fans it out, so an event and
its wandb twin can never drift apart (a metric logged to one and forgotten in the other).

Only rank 0 writes: the other ranks get a NullWriter, a wandb logger that logs nothing and a
quiet log, and call the same methods.
"""

from __future__ import annotations

from typing import Any, Callable

from runspec.run import events
from runspec.run.metrics import PARAMS, PARAMS_TRAINABLE, TRAIN_STAGE


class Sinks:
    def __init__(self, writer: events.EventWriter | events.NullWriter, log: Callable[[str], None], wandb: Any = None,
                 tensorboard: Any = None):
        self.writer, self.log, self.wandb, self.tensorboard = writer, log, wandb, tensorboard

    def emit(self, kind: str, **data: Any) -> None:
        """An event only: what wandb has no place for (status, start, checkpoint, sample)."""
        self.writer.emit(kind, **data)

    def _metrics(self, kind: str, step: int, metrics: dict[str, float], **extra: Any) -> None:
        self.writer.emit(kind, step=step, metrics=metrics, **extra)
        if self.wandb is not None:
            self.wandb.log(metrics, step)
        if self.tensorboard is not None:
            self.tensorboard.log(metrics, step)

    def sample(self, step: int, text: str) -> None:
        """A generated sample: the event (the Training tab shows it) and TensorBoard's text."""
        self.writer.emit(events.SAMPLE, step=step, text=text)
        if self.tensorboard is not None:
            self.tensorboard.text("samples", text, step)

    def step(self, step: int, metrics: dict[str, float], **extra: Any) -> None:
        """A log interval's train/* and debug/* figures."""
        self._metrics(events.STEP, step, metrics, **extra)

    def eval(self, step: int, metrics: dict[str, float], **extra: Any) -> None:
        """A running validation's train_benchmarks/* figures."""
        self._metrics(events.EVAL, step, metrics, **extra)

    def final(self, step: int, metrics: dict[str, float]) -> None:
        """The end-of-run final_benchmarks/* figures, also the wandb run's summary."""
        self._metrics(events.FINAL, step, metrics)
        if self.wandb is not None:
            self.wandb.summary(metrics)

    def stage(self, step: int, change: dict[str, Any]) -> None:
        """A stage began (or ReLoRA restarted): the event, and the stage and sizes as wandb series."""
        self.writer.emit(events.STAGE, step=step, **change)
        sizes = {TRAIN_STAGE: change["stage"], PARAMS: change["params"], PARAMS_TRAINABLE: change["params_trainable"]}
        if self.wandb is not None:
            self.wandb.log(sizes, step)
        if self.tensorboard is not None:
            self.tensorboard.log(sizes, step)

    def warning(self, message: str) -> None:
        """Something the user should know that does not stop the run: the log and an event."""
        self.log(message)
        self.writer.emit(events.WARNING, message=message)
