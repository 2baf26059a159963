"""``python -m engine train RUN_DIR``: train a run directory to its max_steps or time budget.

The engine owns the run's state once it starts: running -> completed | stopped | failed,
each with a timestamp (and a reason), and it checkpoints on SIGTERM/SIGINT before leaving.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path

from engine import checkpoint, events
from engine.config import ConfigError, RunConfig, parse_time_budget, resolved_dict
from engine.corpus import CorpusError
from engine.rundir import COMPLETED, FAILED, RUNNING, STOPPED, RunDir
from engine.tokenizers import TokenizerError

BAD_INPUT = (ConfigError, CorpusError, TokenizerError, checkpoint.CheckpointError)


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it between steps, so a stop lands on a step
    boundary and the checkpoint is exact."""

    def __init__(self) -> None:
        self.signal: str | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signal = signal.Signals(signum).name


def log(msg: str) -> None:
    print(msg, flush=True)


def run(run_dir: str | Path) -> int:
    rd = RunDir(run_dir)
    stop = StopFlag()
    writer = events.EventWriter(rd.events)
    wandb = trainer = None
    try:
        cfg = rd.read_config()
        state = rd.read_state()
        if state.status == RUNNING and state.pid in (None, os.getpid()):  # the worker recorded the start
            rd.update(pid=os.getpid(), max_steps=cfg.train.max_steps, exit_code=None)
        else:
            rd.transition(RUNNING, pid=os.getpid(), max_steps=cfg.train.max_steps, exit_code=None)
        writer.emit(events.STATUS, status=RUNNING, pid=os.getpid())
        from engine.trainer import Trainer  # torch import after the state is visible

        trainer = Trainer(cfg, log)
        resumed_from = None
        ckpt = rd.latest_checkpoint()
        if ckpt is not None:
            trainer.load_state(checkpoint.load(ckpt, trainer.device))
            resumed_from = trainer.step
            log(f"resumed from {ckpt} at step {trainer.step}")
        from engine.wandb_log import WandbLogger

        wandb = WandbLogger(cfg, rd.path, rd.id, resolved_dict(cfg), warn=log)
        writer.emit(events.START, step=trainer.step, max_steps=cfg.train.max_steps, resumed_from=resumed_from,
                    wandb_dir=wandb.directory, **trainer.summary())
        log(f"training {rd.id}: {trainer.summary()['model']}, {trainer.summary()['params']:,} parameters "
            f"on {trainer.device}")
        status, reason = _loop(trainer, cfg, rd, writer, wandb, stop)
        code = 0
    except BAD_INPUT as e:
        status, reason, code = FAILED, str(e), 2
        print(reason, file=sys.stderr, flush=True)
    except Exception as e:
        traceback.print_exc()
        status, reason, code = FAILED, f"{type(e).__name__}: {e}".splitlines()[0], 1
    if status == FAILED:
        writer.emit(events.ERROR, reason=reason)
    writer.emit(events.STATUS, status=status, reason=reason)
    step = trainer.step if trainer is not None else rd.read_state().step
    rd.transition(status, reason=reason, exit_code=code, step=step, pid=None)
    if wandb is not None:
        wandb.finish(exit_code=code)
    writer.close()
    return code


def _loop(trainer, cfg: RunConfig, rd: RunDir, writer, wandb, stop: StopFlag) -> tuple[str, str]:
    from engine.device import sync

    t, e = cfg.train, cfg.eval
    budget = parse_time_budget(t.max_time)
    started = time.monotonic()
    last_ckpt = trainer.step
    steps_in_interval, interval_t0, excluded = 0, time.perf_counter(), 0.0

    def save() -> None:
        nonlocal last_ckpt
        path = checkpoint.save(rd.checkpoints, trainer.step, trainer.state())
        last_ckpt = trainer.step
        writer.emit(events.CHECKPOINT, step=trainer.step, path=str(path))
        rd.update(step=trainer.step)

    def run_eval() -> None:
        res = trainer.evaluate(trainer.eval_offsets)
        metrics = res.metrics("train_benchmarks")
        writer.emit(events.EVAL, step=trainer.step, metrics=metrics)
        wandb.log(metrics, trainer.step)
        if e.sample_tokens:
            text = trainer.sample(seed=t.seed + trainer.step)
            writer.emit(events.SAMPLE, step=trainer.step, text=text)
        log(f"step {trainer.step}: val loss {res.loss:.4f} bpb {res.bpb:.4f}")

    reason = ""
    while trainer.step < t.max_steps:
        if stop.signal:
            reason = f"stopped by {stop.signal} at step {trainer.step}/{t.max_steps}"
            break
        if budget and time.monotonic() - started >= budget:
            reason = f"time budget {t.max_time} reached at step {trainer.step}/{t.max_steps}"
            break
        want = (trainer.step + 1) % cfg.log.every == 0 or trainer.step + 1 == t.max_steps
        _, m = trainer.train_step(want_metrics=want and cfg.log.grad_norms)
        steps_in_interval += 1
        if want:
            sync(trainer.device)
            dt = max(1e-9, time.perf_counter() - interval_t0 - excluded)
            tok_s = steps_in_interval * cfg.tokens_per_step / dt
            metrics = {
                **trainer.interval_means(),
                "train/lr": trainer.lr,
                "train/tokens_per_s": tok_s,
                "train/step_ms": 1000 * dt / steps_in_interval,
                "train/mfu": tok_s * trainer.flops_per_token / trainer.peak_flops,
                "train/tokens": trainer.tokens_seen,
                **{k: v.item() for k, v in m.items()},
            }
            writer.emit(events.STEP, step=trainer.step, max_steps=t.max_steps, metrics=metrics)
            wandb.log(metrics, trainer.step)
            steps_in_interval, interval_t0, excluded = 0, time.perf_counter(), 0.0
        paused = time.perf_counter()
        if e.every and trainer.step % e.every == 0 and trainer.step < t.max_steps:
            run_eval()
        if t.checkpoint_every and trainer.step % t.checkpoint_every == 0:
            save()
        excluded += time.perf_counter() - paused  # evals and checkpoints do not count as training time

    if trainer.step > last_ckpt or trainer.step == 0:
        save()
    if trainer.step < t.max_steps:
        log(reason)
        return STOPPED, reason
    if e.final:
        res = trainer.evaluate(trainer.full_val_offsets(), conviction_stats=True)
        final = {**res.metrics("final_benchmarks"), "final_benchmarks/tokens": res.tokens}
        writer.emit(events.FINAL, step=trainer.step, metrics=final)
        wandb.log(final, trainer.step)
        wandb.summary(final)
        log(f"final: val loss {res.loss:.4f} bpb {res.bpb:.4f} over {res.tokens:,} tokens")
    if e.sample_tokens:
        writer.emit(events.SAMPLE, step=trainer.step, text=trainer.sample(seed=t.seed + trainer.step))
    return COMPLETED, ""
