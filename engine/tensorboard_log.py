"""TensorBoard event files in the run directory (``[log] tensorboard = true``), so
``tensorboard --logdir runs/`` shows every run beside the cockpit. The same scalars as
events.jsonl and wandb (one call in ``Sinks`` feeds all three) and the samples as text.
Like wandb, a failure is reported once and training goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from runspec.config.schema import RunConfig

DIRECTORY = "tensorboard"  # inside the run directory


class TensorBoardLogger:
    def __init__(self, cfg: RunConfig, run_dir: Path, resumed_from: int | None = None,
                 warn: Callable[[str], None] = print):
        self.writer = None
        self.warn = warn
        if not cfg.log.tensorboard:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warn("log.tensorboard = true but tensorboard is not installed (pip install 'cockpit[tensorboard]'); "
                 "this run logs to events.jsonl (and wandb) only")
            return
        # purge_step: a resumed run's steps after its checkpoint were logged once before the stop;
        # TensorBoard hides those older points, so each step appears once
        self.writer = SummaryWriter(log_dir=str(run_dir / DIRECTORY), purge_step=resumed_from or None)

    @classmethod
    def off(cls) -> "TensorBoardLogger":
        logger = cls.__new__(cls)
        logger.writer, logger.warn = None, print
        return logger

    def _guard(self, what: Callable[[], None]) -> None:
        if self.writer is None:
            return
        try:
            what()
        except Exception as e:  # a full disk: say it once, train on
            self.writer = None
            self.warn(f"tensorboard disabled for this run: {type(e).__name__}: {e}")

    def log(self, metrics: dict[str, float], step: int) -> None:
        def write():
            for name, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(name, value, step)
        self._guard(write)

    def text(self, tag: str, text: str, step: int) -> None:
        # two spaces before each newline: TensorBoard renders text as Markdown
        self._guard(lambda: self.writer.add_text(tag, text.replace("\n", "  \n"), step))

    def finish(self) -> None:
        if self.writer is not None:
            self._guard(self.writer.close)
            self.writer = None
