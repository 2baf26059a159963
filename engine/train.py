"""``python -m engine train RUN_DIR``: train a run directory to its max_steps or time budget.

The engine owns the run's state once it starts: running -> completed | stopped | failed,
each with a timestamp (and a reason), and it checkpoints on SIGTERM/SIGINT before leaving.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from engine import checkpoint, launch
from engine.cpu_threads import Governor, ThreadPlan
from engine.device import DeviceError
from engine.sinks import Sinks
from runspec.config.plan import phase
from runspec.config.schema import ConfigError, RunConfig, node_problem, parse_time_budget, resolved_dict
from runspec.data.corpus import CorpusError
from runspec.data.tokenizers import TokenizerError
from runspec.run import events, lifecycle, node_end
from runspec.run.metrics import (
    CPU_OTHERS,
    DATA_WAIT,
    FINAL,
    FINAL_MEMORY_TOKENS,
    FINAL_SLIDING_TOKENS,
    FINAL_TEST_TOKENS,
    FINAL_TOKENS,
    FULL_SECONDS,
    LR,
    MFU,
    RUNNING_VAL,
    STEP_MS,
    THREADS,
    TOKENS,
    TOKENS_PER_S,
)
from runspec.run.process import Proc, this_host
from runspec.run.rundir import (
    COMPLETED,
    FAILED,
    LAUNCH_ENV,
    RUNNING,
    STOPPED,
    RunDir,
    RunGone,
    RunState,
    StateConflict,
    StateDamaged,
    StateError,
)
from runspec.run.stopflag import StopFlag

BAD_INPUT = (ConfigError, CorpusError, TokenizerError, checkpoint.CheckpointError, DeviceError)
NODE_REPORT_S = 60.0  # how long node 0 waits for another node to say why its ranks ended
STALE_TMP_S = 60  # a temporary file this old in a run directory was left by a killed writer


class StoppedBeforeStart(Exception):
    pass


_quiet = False  # ranks other than 0 of a distributed run: rank 0 speaks for all of them



def _phase(trainer) -> str:
    """The stage in force as phases a person counts ('2/2' after a run's one growth)."""
    stages = trainer.plan.stages
    return phase(trainer.stage, len(stages), stages[0].at_step if stages else None)

def log(msg: str) -> None:
    if not _quiet:
        print(msg, flush=True)


def attach(rd: RunDir, me: Proc, max_steps: int | None) -> RunState:
    """Record this process as the run's engine. A launcher (worker, CLI) has already moved the
    run to ``running`` and hands us its token; run directly, the engine makes the transition
    itself. A run whose live engine is another process is refused."""
    launch = os.environ.get(LAUNCH_ENV)

    def change(state: RunState) -> None:
        claimed = state.status == RUNNING and launch is not None and state.launch == launch
        if not claimed:
            if state.status == RUNNING and state.elsewhere():
                raise StateConflict(f"{rd.id} is running on {state.host} (engine pid {state.pid}); stop it there first")
            if state.status == RUNNING:
                other = state.engine()
                if other is not None and other.pid != me.pid and other.alive():
                    raise StateConflict(f"{rd.id} is already running (engine pid {other.pid}); stop it first")
                owner = state.owner_proc()
                if other is None and owner is not None and owner.alive() and owner.pid != me.pid:
                    raise StateConflict(f"{rd.id} is being started by {owner}; let it, or stop it first")
            state.move("attach", owner=me.to_dict(), launch=None, slot=None)
        state.pid, state.pid_start, state.exit_code, state.host = me.pid, me.start, None, this_host()
        if max_steps is not None:
            state.max_steps = max_steps

    return rd.modify(change)


def remove_stale_temporaries(rd: RunDir) -> None:
    """Temporary files a killed writer left behind (checkpoints can be hundreds of MB)."""
    for f in checkpoint.remove_stale_temporaries(rd.checkpoints):
        log(f"removed {f.name}, a checkpoint write that never finished")
    now = time.time()
    for f in rd.path.glob(".*.tmp"):  # state.json/run.json replacements; another writer may be mid-way
        try:
            if now - f.stat().st_mtime > STALE_TMP_S:
                f.unlink()
        except OSError:
            pass


def node_rank_of(given: int | None) -> int:
    """This machine's node rank: --node-rank, else Slurm's $SLURM_NODEID (srun starts the same
    command on every node), else 0."""
    if given is not None:
        return given
    value = os.environ.get("SLURM_NODEID", "")
    return int(value) if value.isdigit() else 0


def own_log(run_dir: str | Path, node: int) -> None:
    """Send this process's stdout and stderr (and its children's) to the run's log: engine.log
    on node 0, engine.node<K>.log on node K (a node's log, as cockpit's join writes it)."""
    rd = RunDir(run_dir)
    path = rd.node_log(node)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as e:
        print(f"{path}: cannot write the log ({e}); the runs directory must be one every node mounts",
              file=sys.stderr, flush=True)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def run(run_dir: str | Path, stop: StopFlag | None = None, node_rank: int | None = None,
        rdzv: str | None = None, threads: ThreadPlan | None = None) -> int:
    """Train (one process), launch the ranks (``gpus`` > 1 or ``nodes`` > 1), or be one of them
    (under torchrun). On node K > 0 of a multi-node run this process only launches its node's
    ranks and speaks on its own stdout: node 0's engine owns the run's state and events."""
    global _quiet
    rd = RunDir(run_dir)
    stop = stop or StopFlag()
    ranked = launch.rank_env()
    node = node_rank_of(node_rank) if ranked is None else 0
    if node and (node_rank is not None or _spans_nodes(rd)):  # (a Slurm node id alone: only for a multi-node run)
        return _follow_node(rd, node, rdzv, stop)
    main = ranked is None or ranked[0] == 0
    _quiet = not main
    # under torchrun the run's engine is the launcher (or the torchrun agent): stop signals it
    me = launch.identity() if ranked else Proc.me("engine")
    try:
        writer = events.EventWriter(rd.events) if main else events.NullWriter()
    except OSError as e:
        print(f"{rd.path}: cannot write events ({e})", file=sys.stderr, flush=True)
        return 2
    sinks = Sinks(writer, log)  # every record fans out from here (wandb joins once it is set up)
    wandb = tensorboard = trainer = dist = None
    attached = False
    step: int | None = None  # known only once a checkpoint is loaded or a step trained
    try:
        try:
            cfg, bad_config = rd.read_config(), None
        except ConfigError as e:  # attach first, so the failure is recorded as this run's
            cfg, bad_config = None, e
        if main and not (ranked and launch.LAUNCHER_ENV in os.environ):  # (cockpit's launcher attached)
            state = attach(rd, me, cfg.train.max_steps if cfg is not None else None)
            writer.emit(events.STATUS, status=RUNNING, pid=me.pid)
        else:
            state = rd.read_state()
        attached = main
        if bad_config is not None:
            raise bad_config
        if ranked is None and (cfg.train.gpus > 1 or cfg.train.nodes > 1):
            if state.stop_requested or stop.signal:
                raise StoppedBeforeStart
            return _launch(rd, cfg, me, writer, stop, rdzv)
        if ranked is None and (state.stop_requested or stop.signal):  # no need to load anything
            raise StoppedBeforeStart
        if main:
            remove_stale_temporaries(rd)
        from engine import distributed  # torch import after the state is visible
        from engine.trainer import Trainer

        import torch

        if threads is not None:
            torch.set_num_threads(threads.threads)
        dist, device = distributed.init(cfg.train.device)
        if dist.enabled and dist.any(state.stop_requested or stop.signal)[0]:  # all ranks or none
            raise StoppedBeforeStart
        trainer = Trainer(cfg, log, dist, device)
        resumed_from = None
        # rank 0 finds the newest intact checkpoint (setting damaged ones aside); the others load it
        found = checkpoint.load_newest(rd.checkpoints, trainer.device) if main else None
        path = dist.broadcast(str(found.path) if found is not None else None)
        if found is None and path is not None:
            found = checkpoint.Loaded(Path(path), checkpoint.load(Path(path), trainer.device), [])
        if found is not None:
            for problem in found.skipped:
                message = f"{problem}; set aside, resuming from the newest intact checkpoint instead"
                sinks.warning(message)
            trainer.load_state(found.payload)
            resumed_from = step = trainer.step
            log(f"resumed from {found.path} at step {trainer.step}"
                + (f", stage {_phase(trainer)}" if trainer.plan.stages else ""))
        init_from = None
        if found is None and cfg.init.from_:
            init_from = _init_from(trainer, cfg.init.from_, rd.path.parent)
        from engine.wandb_log import WandbLogger

        meta = rd.read_meta()
        wb_config = resolved_dict(cfg)
        if meta.sweep:  # the varied values as config keys of their own, to group and colour by
            wb_config = {**wb_config, "sweep": meta.sweep, "sweep_values": meta.sweep_values}
        wandb = WandbLogger(cfg, rd.path, rd.id, wb_config, warn=log, group=meta.sweep) if main else WandbLogger.off()
        sinks.wandb = wandb
        from engine.tensorboard_log import TensorBoardLogger

        tensorboard = TensorBoardLogger(cfg, rd.path, resumed_from, warn=sinks.warning) if main else None
        sinks.tensorboard = tensorboard
        sinks.emit(events.START, step=trainer.step, max_steps=cfg.train.max_steps, resumed_from=resumed_from,
                   threads=torch.get_num_threads(),  # intra-op threads: a worker with --slots splits the cores
                   cpu=threads.to_dict() if threads is not None else None,  # how they were chosen (engine.cpu_threads)
                   nodes=cfg.train.nodes,
                    wandb_dir=wandb.directory, init_from=init_from, stage_starts=[s.at_step for s in cfg.stage],
                    **trainer.summary())
        log(f"training {rd.id}: {trainer.summary()['model']}, {trainer.summary()['params']:,} parameters "
            f"on {trainer.device}; torch.compile: {trainer.compile_reason}")
        governor = Governor(threads).start() if threads is not None and trainer.device.type == "cpu" else None
        if governor is not None and (why := threads.describe()):
            log(why)
        try:
            status, reason, step = _loop(trainer, cfg, rd, sinks, stop, governor)
        finally:
            if governor is not None:
                governor.close()
        code = 0 if status != FAILED else 1
    except StoppedBeforeStart:
        status, reason, code = STOPPED, "stopped before training started", 0
        log(reason)
    except checkpoint.CheckpointWriteError as e:  # a failure of the run (a full disk), not of its input
        status, reason, code = FAILED, str(e), 1
        print(reason, file=sys.stderr, flush=True)
    except BAD_INPUT as e:
        status, reason, code = FAILED, str(e), 2
        print(reason, file=sys.stderr, flush=True)
    except StateError as e:
        status, reason, code = FAILED, str(e), 2
        print(reason, file=sys.stderr, flush=True)
    except Exception as e:
        traceback.print_exc()
        status, reason, code = FAILED, f"{type(e).__name__}: {e}".splitlines()[0], 1
    if attached:  # a refused attach (another engine runs it) must not write into its run
        record_end(rd, writer, me, status, reason, code, step)
    if wandb is not None:
        wandb.finish(exit_code=code)
    if tensorboard is not None:
        tensorboard.finish()
    writer.close()
    if trainer is not None:
        trainer.batches.close()
    if dist is not None:
        dist.close()
    return code


def record_end(rd: RunDir, writer, me: Proc, status: str, reason: str, code: int, step: int | None = None) -> None:
    """The end of the run, as this engine (or launcher) saw it: events, then state.json by
    compare-and-set, unless the run has meanwhile passed to another process."""
    if status == STOPPED:  # a stop asked for with its reason (a search's pruner): that is why it stopped
        try:
            asked = rd.read_state().stop_reason
        except StateError:
            asked = ""
        if asked:
            reason = f"{asked}; {reason}"
    if status == FAILED:
        writer.emit(events.ERROR, reason=reason)
    writer.emit(events.STATUS, status=status, reason=reason)
    finish = {"reason": reason, "exit_code": code, "pid": None, "pid_start": None, "launch": None,
              "stop_requested": False, "stop_reason": ""}
    if step is not None:  # a start that failed before loading never lowers the recorded step
        finish["step"] = step
    try:
        rd.transition(lifecycle.ENDS[status], expected=RUNNING, guard=lambda s: "" if s.pid == me.pid else
                      f"the run now belongs to pid {s.pid}, not this engine ({me.pid})", **finish)
    except StateError as e:
        log(f"could not record the end of the run: {e}")


def _nodes(cfg: RunConfig, node: int, rdzv: str | None, where: str) -> launch.Nodes | None:
    """The multi-node shape of this launch (None on one machine); ConfigError when it cannot meet."""
    t = cfg.train
    endpoint = rdzv or t.rdzv
    why = node_problem(t.nodes, node, endpoint)
    if why:
        raise ConfigError(where, "[train] nodes", why)
    return launch.Nodes(t.nodes, node, endpoint) if t.nodes > 1 else None


def _spans_nodes(rd: RunDir) -> bool:
    try:
        return rd.read_config().train.nodes > 1
    except ConfigError:
        return False


def _follow_node(rd: RunDir, node: int, rdzv: str | None, stop: StopFlag) -> int:
    """Node K > 0: start this node's ranks and wait for them. It writes nothing into the run
    directory; its output is this process's (cockpit sends it to engine.node<K>.log)."""
    me = Proc.me("engine")
    try:
        cfg = rd.read_config()
        nodes = _nodes(cfg, node, rdzv, str(rd.resolved))
        state = rd.read_state()
    except (ConfigError, StateError) as e:
        print(f"{rd.id}: node {node}: {e}", file=sys.stderr, flush=True)
        return 2
    if state.stop_requested or stop.signal:
        log(f"node {node}: the run was stopped before this node started")
        return 0
    log(f"node {node} of {nodes.count}: {cfg.train.gpus} rank(s) of {rd.id}, meeting node 0 at {nodes.endpoint}")
    code, why = launch.launch(rd.path, cfg.train.gpus, me, stop, log, nodes)
    log(node_end.ended_line(node, code, why))  # node 0 reads this line for the run's reason (node_cause)
    return code


def _launch(rd: RunDir, cfg: RunConfig, me: Proc, writer, stop: StopFlag, rdzv: str | None = None) -> int:
    """Run the ranks under torchrun; record the end when rank 0 could not (a rank died)."""
    code, why = launch.launch(rd.path, cfg.train.gpus, me, stop, log, _nodes(cfg, 0, rdzv, str(rd.resolved)))
    try:
        state = rd.read_state()
    except StateError as e:
        log(f"could not read the run's state after its ranks ended: {e}")
        writer.close()
        return code or 1
    reason = state.reason if state.status == FAILED else None  # the run's reason as it now stands
    if state.status == RUNNING and state.pid == me.pid:  # rank 0 left without recording the end
        reason = why or f"the ranks ended without recording the end of the run (torchrun exit code {code}); see engine.log"
        code = code or 1
        record_end(rd, writer, me, FAILED, reason, code)
        log(reason)
    elif code and why and not why.startswith("rank 0 ") and state.status == FAILED:
        # rank 0 saw only the consequence (a collective that broke, in engine.log); the cause was another rank
        writer.emit(events.ERROR, reason=why)
        rd.update(reason=why)
        reason = why
    if code and cfg.train.nodes > 1 and reason is not None and node_end.lost_a_peer(reason):
        # this node saw only that another went away; the cause is in that node's log
        cause = node_end.node_cause({k: rd.node_log(k) for k in range(1, cfg.train.nodes)}, NODE_REPORT_S)
        if cause:
            log(cause)
            writer.emit(events.ERROR, reason=cause)
            try:
                rd.update(expected=FAILED, reason=cause)
            except StateError as e:
                log(f"could not record the cause: {e}")
    writer.close()
    return code


def _init_from(trainer, ref: str, runs_root: Path) -> dict:
    """Load the parent's weights into the fresh stage-0 model (nothing else: a new optimizer)."""
    from engine.stages import init_from, resolve_parent

    path, _, label = resolve_parent(ref, runs_root)
    payload = checkpoint.load(path, trainer.device)
    fresh = init_from(trainer.raw_model, payload, label, trainer.tokenizer.name, trainer.tokenizer.vocab_size)
    step = int(payload["step"])
    log(f"initialised from {label} (step {step}, {path})"
        + (f"; kept at their fresh init: {', '.join(fresh[:6])}{' ...' if len(fresh) > 6 else ''}" if fresh else ""))
    return {"ref": ref, "path": str(path), "step": step, "fresh": fresh}


def _loop(trainer, cfg: RunConfig, rd: RunDir, sinks: Sinks, stop: StopFlag,
          governor: Governor | None = None) -> tuple[str, str, int]:
    """Train until max_steps, a stop signal, the time budget or a non-finite loss. Returns the
    final status, its reason and the step to record (the last checkpoint's, after a failure).
    On the CPU, ``governor`` moves the thread count as other processes come and go."""
    import torch

    from engine.device import sync

    t, e = cfg.train, cfg.eval
    dist = trainer.dist
    main = dist.main  # rank 0 evaluates, samples, checkpoints and speaks; the others train (and, under
    # FSDP, join each evaluation and sample, whose forward passes gather the weights from every rank)
    budget = parse_time_budget(t.max_time)
    started = time.monotonic()
    last_ckpt = trainer.step
    steps_in_interval, interval_t0, excluded = 0, time.perf_counter(), 0.0

    def gone() -> None:
        """A run directory deleted under a training engine: stop, and write nothing where it was
        (a checkpoint would re-create it as an orphan no listing shows)."""
        if main and not rd.state_file.exists():
            raise RunGone(f"{rd.id}: the run directory {rd.path} was deleted while training; stopped at step "
                          f"{trainer.step} without writing anything there")

    def save() -> None:
        nonlocal last_ckpt
        gone()
        last_ckpt = trainer.step
        payload = trainer.state() if main or trainer.sharded else None  # FSDP: every rank gathers
        if not main:
            return
        try:
            path = checkpoint.save(rd.checkpoints, trainer.step, payload)
        except checkpoint.CheckpointError:
            gone()  # deleted in the middle of the write: say that, not "free disk space"
            raise
        sinks.emit(events.CHECKPOINT, step=trainer.step, path=str(path), **staged())
        try:
            rd.update(expected=RUNNING, step=trainer.step)
        except StateDamaged:
            gone()  # state.json removed by a deletion still under way: say that, not "incomplete"
            raise

    def diverged() -> str:
        """'' while every loss so far was finite on every rank (one host sync: called only where
        the loop syncs anyway, at the same steps on each rank); else the failure reason."""
        bad = trainer.divergence()
        if not dist.any(bad is not None)[0]:
            return ""
        if bad is None:
            return (f"the loss became non-finite on another rank by step {trainer.step}; the last good checkpoint "
                    f"is step {last_ckpt}; lower the learning rate or check the data")
        at, value, last = bad
        last_text = f"last finite loss {last:.4f} at step {at - 1}" if at > 1 else "no finite loss before it"
        kept = f"the last good checkpoint is step {last_ckpt}" if last_ckpt else "no checkpoint was written"
        return (f"loss became {value} at step {at} ({last_text}, lr {cfg.optim.lr * trainer.lr_factor(at - 1):.3g}); "
                f"{kept}; lower the learning rate or check the data")

    def run_eval(full: bool) -> None:
        res = trainer.evaluate(trainer.eval_offsets)
        metrics = res.metrics(RUNNING_VAL)
        if full:  # the whole validation split, beside the running validation's fixed windows
            t0 = time.perf_counter()
            whole = trainer.evaluate(trainer.full_val_offsets())
            metrics.update(whole.metrics(RUNNING_VAL, "full_"))
            metrics[FULL_SECONDS] = time.perf_counter() - t0
            log(f"step {trainer.step}: full validation loss {whole.loss:.4f} over {whole.tokens:,} tokens "
                f"in {metrics[FULL_SECONDS]:.1f} s")
        sinks.eval(trainer.step, metrics, **staged())
        if e.sample_tokens:
            text = trainer.sample(seed=t.seed + trainer.step)
            sinks.sample(trainer.step, text)
        log(f"step {trainer.step}: val loss {res.loss:.4f} bpb {res.bpb:.4f}")

    def staged() -> dict:
        """Events of a run with stages carry the stage in force."""
        return {"stage": trainer.stage} if trainer.plan.stages else {}

    reason = ""
    if trainer.step == 0 and (e.at_start == "always" or (e.at_start == "auto" and cfg.init.from_)) \
            and (main or trainer.sharded):
        run_eval(False)  # what the starting weights score here: a fine-tune's parent on its new data
    while trainer.step < t.max_steps:
        # every rank must leave at the same step: the stop (any rank's signal) and the budget are agreed
        halt, spent = dist.any(stop.signal is not None, bool(budget) and time.monotonic() - started >= budget)
        if halt:
            reason = f"stopped by {stop.signal or 'a stop signal'} at step {trainer.step}/{t.max_steps}"
            break
        if spent:
            reason = f"time budget {t.max_time} reached at step {trainer.step}/{t.max_steps}"
            break
        for change in trainer.advance():
            sinks.stage(trainer.step, change)
            log(f"step {trainer.step}: stage {_phase(trainer)}"
                f"{' ' + change['name'] if change.get('name') else ''}: {change['description']} "
                f"({change['params']:,} parameters, {change['params_trainable']:,} trainable)"
                + events.stage_probe(change))
        if governor is not None and (new := governor.advice()) is not None:
            log(f"step {trainer.step}: {governor.describe(new)}")
            torch.set_num_threads(new)
            governor.applied(new)
        want = (trainer.step + 1) % cfg.log.every == 0 or trainer.step + 1 == t.max_steps
        _, m = trainer.train_step(want_metrics=want, grad_norms=cfg.log.grad_norms)
        steps_in_interval += 1
        if want:
            sync(trainer.device)
            dt = max(1e-9, time.perf_counter() - interval_t0 - excluded)
            tok_s = steps_in_interval * trainer.tokens_per_step / dt  # global: every rank's tokens
            metrics = {
                **trainer.interval_means(),
                LR: trainer.lr,
                TOKENS_PER_S: tok_s,
                STEP_MS: 1000 * dt / steps_in_interval,
                MFU: tok_s * trainer.flops_per_token / (trainer.peak_flops * dist.world),
                TOKENS: trainer.tokens_seen,
                # share of the interval the step waited for its batches (the input pipeline's stall)
                DATA_WAIT: min(1.0, trainer.batches.take_waited() / dt),
                **({THREADS: governor.current, CPU_OTHERS: governor.others}
                   if governor is not None and governor.others is not None else {}),
                **{k: v.item() for k, v in m.items()},
            }
            gone()
            sinks.step(trainer.step, metrics, max_steps=t.max_steps, **staged())
            steps_in_interval, interval_t0, excluded = 0, time.perf_counter(), 0.0
        paused = time.perf_counter()
        full_pass = bool(e.full_every) and trainer.step % e.full_every == 0 and trainer.step < t.max_steps
        evaluating = (e.every and trainer.step % e.every == 0 and trainer.step < t.max_steps) or full_pass
        saving = t.checkpoint_every and trainer.step % t.checkpoint_every == 0
        if (want or evaluating or saving) and (failure := diverged()):
            log(failure)
            return FAILED, failure, last_ckpt
        if evaluating and (main or trainer.sharded):  # (FSDP: a forward needs every rank)
            run_eval(full_pass)
        if saving:
            save()
        excluded += time.perf_counter() - paused  # evals and checkpoints do not count as training time

    if failure := diverged():
        log(failure)
        return FAILED, failure, last_ckpt
    merged = trainer.finish_adapters() if trainer.step >= t.max_steps else 0
    if merged:
        log(f"merged {merged} adapters into the weights (lora.merge = true)")
    if trainer.step > last_ckpt or trainer.step == 0 or merged:
        save()
    if trainer.step < t.max_steps:
        log(reason)
        return STOPPED, reason, trainer.step
    if not main and not trainer.sharded:
        return COMPLETED, "", trainer.step
    if e.final:
        offsets = trainer.full_val_offsets()
        T = cfg.model.block_size
        log(f"final: scoring {len(offsets) * T:,} validation tokens ({len(offsets):,} windows; "
            f"eval.final_max_batches caps the pass)")
        said = [time.monotonic()]

        def progress(done: int, total: int) -> None:  # an event at most every 2 s: the TUI and headless show it
            if done == 0 or time.monotonic() - said[0] >= 2.0:
                said[0] = time.monotonic()
                sinks.emit(events.PROGRESS, step=trainer.step, what="final", done=done, total=total,
                           tokens=total * T)

        res = trainer.evaluate(offsets, head_stats=True, posterior_samples=e.posterior_samples, progress=progress)
        final = {**res.metrics(FINAL), FINAL_TOKENS: res.tokens}
        if cfg.model.memory.active:  # Transformer-XL's protocol: streams read in order, the memory carried
            mem = trainer.evaluate_memory()
            final.update(mem.metrics(FINAL, "memory_"))
            final[FINAL_MEMORY_TOKENS] = mem.tokens
            log(f"final: with the memory carried over the split ({cfg.model.memory.label()}, "
                f"{cfg.model.memory.slots(evaluating=True)} states a layer) val loss {mem.loss:.4f} "
                f"bpb {mem.bpb:.4f} over {mem.tokens:,} tokens")
        if e.stride:  # sliding windows: every token with at least block_size - stride of context
            offsets, skip = trainer.sliding_offsets()
            slide = trainer.evaluate(offsets, skip=skip)
            final.update(slide.metrics(FINAL, "sliding_"))
            final[FINAL_SLIDING_TOKENS] = slide.tokens
            log(f"final: sliding-window (stride {e.stride}) val loss {slide.loss:.4f} over {slide.tokens:,} tokens")
        if trainer.data.test is not None:  # the test split, only here, at the end
            test = trainer.data.test
            res_test = trainer.evaluate(trainer.full_val_offsets(test), split=test)
            final.update(res_test.metrics(FINAL, "test_"))
            final[FINAL_TEST_TOKENS] = res_test.tokens
            if cfg.model.memory.active:
                final.update(trainer.evaluate_memory(test).metrics(FINAL, "test_memory_"))
            if e.stride:
                offsets, skip = trainer.sliding_offsets(test)
                final.update(trainer.evaluate(offsets, split=test, skip=skip).metrics(FINAL, "test_sliding_"))
            log(f"final: test loss {res_test.loss:.4f} bpb {res_test.bpb:.4f} over {res_test.tokens:,} tokens")
        sinks.final(trainer.step, final)
        log(f"final: val loss {res.loss:.4f} bpb {res.bpb:.4f} over {res.tokens:,} tokens "
            f"(non-overlapping windows of {cfg.model.block_size})")
    if e.sample_tokens:
        sinks.sample(trainer.step, trainer.sample(seed=t.seed + trainer.step))
    return COMPLETED, "", trainer.step
