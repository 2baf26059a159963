"""wandb, offline unless the config or the environment asks for online. Any wandb failure is
reported once and training goes on: a machine without wandb must train exactly as well."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from runspec.config.schema import RunConfig
from runspec.run.metrics import NAMESPACES, TRAIN_STEP


class WandbLogger:
    def __init__(self, cfg: RunConfig, run_dir: Path, run_id: str, config: dict[str, Any],
                 warn: Callable[[str], None] = print, group: str | None = None):
        self.run = None
        self.warn = warn
        if not cfg.log.wandb or cfg.log.wandb_mode == "disabled":
            return
        env_mode = os.environ.get("WANDB_MODE", "")
        mode = "online" if "online" in (cfg.log.wandb_mode, env_mode) else "offline"
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            import wandb

            self.run = wandb.init(project=cfg.log.wandb_project, name=run_id, id=_wandb_id(run_id),
                                  dir=str(run_dir), mode=mode, config=config, resume="allow",
                                  group=group)  # a sweep's runs are one group
            # every namespace plots against the training step
            self.run.define_metric(TRAIN_STEP)
            for ns in NAMESPACES:
                self.run.define_metric(f"{ns}/*", step_metric=TRAIN_STEP)
        except Exception as e:  # no wandb, no network, bad credentials: carry on without it
            self.run = None
            warn(f"wandb disabled for this run: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")

    @classmethod
    def off(cls) -> "WandbLogger":
        """A logger that logs nothing (ranks other than 0 of a distributed run)."""
        logger = cls.__new__(cls)
        logger.run, logger.warn = None, print
        return logger

    @property
    def directory(self) -> str | None:
        return getattr(self.run, "dir", None) if self.run else None

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.run is not None:
            self.run.log({**metrics, TRAIN_STEP: step})

    def summary(self, metrics: dict[str, float]) -> None:
        if self.run is not None:
            for k, v in metrics.items():
                self.run.summary[k] = v

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            try:
                self.run.finish(exit_code=exit_code)
            except Exception as e:
                self.warn(f"wandb finish failed: {e}")
            self.run = None


def _wandb_id(run_id: str) -> str:
    # wandb ids may not contain some characters; run ids are already [A-Za-z0-9_.-]
    return run_id.replace(".", "_")[:64]
