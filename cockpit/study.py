"""Model-based search: a sweep whose runs an Optuna study chooses one after another, pruned early
by ASHA, Hyperband or the median rule, through the queue like any run.

A spec is a sweep spec whose ``method`` is a sampler:

    [sweep]
    name = "lr-search"
    base = "../quickstart.toml"
    method = "tpe"                      # tpe | random | grid | cmaes (Optuna's samplers)
    trials = 24                         # runs in all, at most
    budget_tokens = 12_000_000          # optional: tokens the trials may train in all (a pruned one
                                        # counts the steps it made); no trial is asked that could cross it
    parallel = 2                        # runs queued or training at once
    seed = 0
    objective = "final_val_loss"        # or any final_benchmarks/ name; minimised or maximised as its
                                        # registry entry says (direction = "maximize" to say otherwise)
    [sweep.set]
    "train.max_steps" = 600
    [sweep.space]
    "optim.lr" = {log_uniform = [1e-4, 1e-2]}
    "optim.warmup_steps" = {int = [0, 200]}
    "optim.weight_decay" = {uniform = [0.0, 0.2]}
    "model.ffn.activation" = {choice = ["gelu", "relu2"]}
    [sweep.prune]
    method = "asha"                     # asha | hyperband | median
    metric = "train_benchmarks/loss"    # what the running validation reports at each eval
    min_steps = 100                     # the first rung (then min_steps x reduction^k)
    reduction = 3

The study lives in the runs directory, in Optuna's journal file storage
(``.cockpit/studies/NAME.journal``: an append-only log of every ask, report and tell, written under
a file lock, so the CLI and the worker can both use it and a crash loses at most the line being
written; SQLite through Optuna's RDB storage would need SQLAlchemy for no gain here). Beside it,
``NAME.json`` holds the spec as it was read. Each trial is a run named ``NAME-tNNN`` whose run.json
records the sweep, its values and its trial number.

The worker tends every open study each round (:func:`tend`): a trial whose run completed is told
its objective (failed: FAIL); the running validation of a running trial is reported to the study
at each evaluation and, when the pruner says so, the run is stopped through the queue's own stop
path with the reason (``pruned at step 300: val 2.31, not in the best 1/3 of the 7 trials at this
rung``) and the trial is PRUNED (the run is stopped and resumable like any other); then the study
is topped up to ``parallel`` active runs until ``trials`` have been asked or, with
``budget_tokens``, until one more trial run to its end could cross the budget: the tokens trained
by the trials that ended plus every active trial counted to its end (so the budget holds whatever
the pruner decides). A trial asked but never
queued (the process died in between) gets its run on the next round, and a trial's run is found by
its trial number, so after a killed worker no trial is lost or run twice.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from cockpit.sweep import SweepError, _need, load_toml, toml_value
from runspec.config.schema import ConfigError
from runspec.run import metrics as M

METHODS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("asha", "hyperband", "median")
DISTRIBUTIONS = ("log_uniform", "uniform", "int", "int_uniform", "choice")
ALIASES = {"final_val_loss": M.FINAL_LOSS, "final_val_bpb": M.FINAL_BPB, "final_test_loss": M.FINAL_TEST_LOSS}
Log = Callable[[str], None]
_EVENTS_READ: dict[str, int] = {}  # run id -> the size of its events when last reported (a worker's memory)


@dataclass
class PruneSpec:
    method: str
    metric: str = M.VAL_LOSS
    min_steps: int = 100
    reduction: int = 3


@dataclass
class StudySpec:
    name: str
    spec: str
    base: str
    method: str
    trials: int
    parallel: int
    seed: int
    objective: str
    direction: str  # minimize | maximize
    fixed: dict[str, Any]
    space: dict[str, dict]
    prune: PruneSpec | None = None
    budget_tokens: int | None = None
    created: float = field(default_factory=time.time)

    @classmethod
    def from_dict(cls, d: dict) -> "StudySpec":
        d = dict(d)
        d["prune"] = PruneSpec(**d["prune"]) if d.get("prune") else None
        return cls(**d)


def is_study(spec: Path) -> bool:
    s = load_toml(spec).get("sweep")
    return isinstance(s, dict) and s.get("method") is not None


def _distribution(key: str, d: Any, spec: Path):
    import optuna

    where = f"[sweep.space] {key}"
    _need(isinstance(d, dict) and len(d) == 1, spec,
          f"{where} = {d!r}: give one of log_uniform, uniform, int = [low, high] or choice = [...]")
    (kind, arg), = d.items()
    _need(kind in DISTRIBUTIONS, spec, f"{where}: unknown distribution {kind!r}; use log_uniform, uniform, int or choice")
    if kind == "choice":
        _need(isinstance(arg, list) and arg and all(isinstance(x, (str, int, float, bool)) for x in arg), spec,
              f"{where}: choice = {arg!r} must be a non-empty list of values")
        return optuna.distributions.CategoricalDistribution(arg)
    _need(isinstance(arg, list) and len(arg) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                          for x in arg) and arg[0] < arg[1], spec,
          f"{where}: {kind} = {arg!r} must be [low, high] with low < high")
    lo, hi = arg
    if kind == "log_uniform":
        _need(lo > 0, spec, f"{where}: log_uniform needs a positive low bound, not {lo}")
        return optuna.distributions.FloatDistribution(lo, hi, log=True)
    if kind == "uniform":
        return optuna.distributions.FloatDistribution(lo, hi)
    _need(lo == int(lo) and hi == int(hi), spec, f"{where}: int = {arg!r} must be whole numbers")
    return optuna.distributions.IntDistribution(int(lo), int(hi))


def distributions(st: StudySpec) -> dict:
    return {k: _distribution(k, d, Path(st.spec)) for k, d in st.space.items()}


def _objective(s: dict, spec: Path) -> tuple[str, str]:
    name = s.get("objective", "final_val_loss")
    _need(isinstance(name, str), spec, f"[sweep] objective = {name!r}: a metric name such as final_val_loss")
    metric = ALIASES.get(name, name)
    _need(metric.startswith(M.FINAL + "/") and M.registered(metric), spec,
          f"[sweep] objective = {name!r}: use final_val_loss, final_val_bpb, final_test_loss or a "
          f"final_benchmarks/ name from the metric registry (docs/reference/metrics.md)")
    better = M.info(metric).better
    direction = s.get("direction") or {M.LOWER: "minimize", M.HIGHER: "maximize"}.get(better)
    _need(direction in ("minimize", "maximize"), spec,
          f"[sweep] objective {metric} is neither better lower nor higher; set direction = \"minimize\" or \"maximize\"")
    return metric, direction


def load_study_spec(spec_path: str | Path) -> StudySpec:
    """Read and check a study spec: every key of the space (its distribution and, through the base
    config, that the key exists and takes such values), the objective, the pruner. Creates nothing."""
    from cockpit.runs import check_config

    spec = Path(spec_path)
    data = load_toml(spec)
    s = data.get("sweep")
    _need(isinstance(s, dict), spec, "no [sweep] table; see examples/sweeps/")
    unknown = set(s) - {"name", "base", "method", "trials", "parallel", "seed", "objective", "direction", "set",
                        "space", "prune", "budget_tokens"}
    _need(not unknown, spec, f"[sweep] unknown key(s) {sorted(unknown)} for a search (method = ...); use name, base, "
                             f"method, trials, parallel, seed, objective, direction, budget_tokens, set, space, prune")
    method = s.get("method")
    _need(method in METHODS, spec, f"[sweep] method = {method!r}: use tpe, random, grid or cmaes")
    name = str(s.get("name") or spec.stem)
    _need(name.replace("-", "").replace("_", "").isalnum(), spec, f"[sweep] name = {name!r}: letters, digits, - and _")
    _need(isinstance(s.get("base"), str), spec, "[sweep] base = \"CONFIG.toml\" is required (relative to this file)")
    base = (spec.parent / s["base"]).resolve()
    _need(base.is_file(), spec, f"[sweep] base = {s['base']!r}: no such file ({base})")
    _need("trials" in s, spec, "[sweep] trials = N is required: how many runs the search may make")
    for key in ("trials", "parallel", "seed"):
        v = s.get(key, {"trials": 0, "parallel": 1, "seed": 0}[key])
        _need(isinstance(v, int) and not isinstance(v, bool) and (v >= 1 or key == "seed"), spec,
              f"[sweep] {key} = {v!r}: a whole number" + (" >= 1" if key != "seed" else ""))
    fixed, space = s.get("set", {}), s.get("space")
    _need(isinstance(fixed, dict), spec, "[sweep.set] must be a table of section.key = value")
    _need(isinstance(space, dict) and space, spec, "[sweep.space] needs at least one key and its distribution, "
                                                   "e.g. \"optim.lr\" = {log_uniform = [1e-4, 1e-2]}")
    objective, direction = _objective(s, spec)
    prune = None
    if "prune" in s:
        p = s["prune"]
        _need(isinstance(p, dict), spec, "[sweep.prune] must be a table with method = asha, hyperband or median")
        bad = set(p) - {"method", "metric", "min_steps", "reduction"}
        _need(not bad, spec, f"[sweep.prune] unknown key(s) {sorted(bad)}; use method, metric, min_steps, reduction")
        _need(p.get("method") in PRUNERS, spec, f"[sweep.prune] method = {p.get('method')!r}: use asha, hyperband "
                                                f"or median")
        prune = PruneSpec(p["method"], str(p.get("metric", M.VAL_LOSS)), p.get("min_steps", 100), p.get("reduction", 3))
        _need(prune.metric.startswith(M.RUNNING_VAL + "/") and M.registered(prune.metric), spec,
              f"[sweep.prune] metric = {prune.metric!r}: a running validation figure, e.g. train_benchmarks/loss")
        for key, low in (("min_steps", 1), ("reduction", 2)):
            v = getattr(prune, key)
            _need(isinstance(v, int) and not isinstance(v, bool) and v >= low, spec,
                  f"[sweep.prune] {key} = {v!r}: a whole number >= {low}")
    budget = s.get("budget_tokens")
    if isinstance(budget, float) and budget.is_integer():
        budget = int(budget)  # 1.5e7 is TOML's float: a whole number of tokens all the same
    _need(budget is None or (isinstance(budget, int) and not isinstance(budget, bool) and budget >= 1), spec,
          f"[sweep] budget_tokens = {budget if budget is None else toml_value(budget)}: a whole number of tokens "
          f">= 1 (e.g. 12_000_000), or leave it out")
    st = StudySpec(name, str(spec.resolve()), str(base), method, s.get("trials", 0), s.get("parallel", 1),
                   s.get("seed", 0), objective, direction, fixed, space, prune, budget)
    dists = distributions(st)
    if method == "grid":
        _need(all(isinstance(d, dict) and "choice" in d for d in space.values()), spec,
              "[sweep] method = \"grid\" takes choice = [...] for every key of [sweep.space] (the grid's points)")
        points = math.prod(len(d["choice"]) for d in space.values())
        _need(st.trials <= points, spec, f"[sweep] trials = {st.trials}: the grid has {points} points; ask for at "
                                         f"most that many")
    if budget is not None:
        full = trial_tokens(st, {})
        _need(full <= budget, spec, f"[sweep] budget_tokens = {budget:,}: one trial trains up to {full:,} tokens "
                                    f"(max_steps x tokens per step), more than the whole budget; raise it")
    # every key exists and takes such values: the base config with the space's bounds checked
    for key, dist in dists.items():
        samples = dist.choices if hasattr(dist, "choices") else (dist.low, dist.high)
        for v in samples:
            try:
                check_config(base, trial_overrides(st, {key: v}, checks_only=True))
            except ConfigError as e:
                raise SweepError(f"{spec}: [sweep.space] {key} = {v!r}: {e}") from None
    return st


def trial_overrides(st: StudySpec, params: dict[str, Any], checks_only: bool = False) -> list[str]:
    """--set strings of a trial: the fixed keys, the trial's values and, with a pruner, running
    validations at each rung (eval.every = min_steps unless it already divides it)."""
    sets = dict(st.fixed)
    sets.update(params)
    if st.prune is not None and not checks_only:
        sets.setdefault("eval.every", st.prune.min_steps)
    return [f"{k}={toml_value(v)}" for k, v in sets.items()]


_TOKENS_PER_STEP: dict[tuple, tuple[int, int]] = {}  # (study, params) -> (tokens per step, max_steps)


def _step_size(st: StudySpec, params: dict[str, Any]) -> tuple[int, int]:
    """(tokens per step, max_steps) of a trial with these values: the space may hold the batch, the
    context or the steps, so each trial's own config says."""
    from cockpit.runs import check_config

    key = (st.name, st.created, tuple(sorted((k, repr(v)) for k, v in params.items())))
    if key not in _TOKENS_PER_STEP:
        cfg = check_config(Path(st.base), trial_overrides(st, params, checks_only=True))
        _TOKENS_PER_STEP[key] = (cfg.tokens_per_step, cfg.train.max_steps)
    return _TOKENS_PER_STEP[key]


def trial_tokens(st: StudySpec, params: dict[str, Any], step: int | None = None) -> int:
    """Tokens a trial trains by ``step`` (None: by its end)."""
    per_step, max_steps = _step_size(st, params)
    return per_step * (max_steps if step is None else step)


# -- storage ---------------------------------------------------------------------------------------
def studies_dir(runs_dir: Path) -> Path:
    d = runs_dir / ".cockpit" / "studies"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _quiet_optuna() -> None:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def storage(runs_dir: Path, name: str):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    _quiet_optuna()
    path = studies_dir(runs_dir) / f"{name}.journal"
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def startup_trials(st: StudySpec) -> int:
    """TPE's random trials before it models: a quarter of the trials (at least one more than run at
    once, at most Optuna's default of 10), so a small search spends most of its budget guided."""
    return min(10, max(st.parallel + 1, st.trials // 4))


def sampler(st: StudySpec, asked: int = 0):
    """The study's sampler as of ``asked`` trials. The sampler lives only as long as one round of
    the worker (its state is not in the storage), so its seed moves on with the trials asked: a
    fresh sampler with the spec's seed alone drew the same first point every round."""
    import optuna

    seed = st.seed * 100_003 + asked
    if st.method == "tpe":
        # constant liar: trials running in parallel are counted as bad, not ignored. Multivariate:
        # one density over all the keys, so a rate that is good only with a long warmup is found
        # as a pair (independent TPE looked for each alone and, in 18 trials, missed the pair in
        # 2 of 4 studies). Random start-up trials: a quarter of the budget, not Optuna's fixed 10.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True,
                                          n_startup_trials=startup_trials(st))
    if st.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if st.method == "grid":
        return optuna.samplers.GridSampler({k: d["choice"] for k, d in st.space.items()}, seed=seed)
    return optuna.samplers.CmaEsSampler(seed=seed)


def pruner(st: StudySpec, max_steps: int):
    import optuna

    p = st.prune
    if p is None:
        return optuna.pruners.NopPruner()
    if p.method == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=p.min_steps, reduction_factor=p.reduction,
                                                      min_early_stopping_rate=0)
    if p.method == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=p.min_steps, max_resource=max_steps,
                                              reduction_factor=p.reduction)
    return optuna.pruners.MedianPruner(n_startup_trials=max(1, st.parallel), n_warmup_steps=p.min_steps - 1)


def meta_path(runs_dir: Path, name: str) -> Path:
    return studies_dir(runs_dir) / f"{name}.json"


def read_spec(runs_dir: Path, name: str) -> StudySpec:
    return StudySpec.from_dict(json.loads(meta_path(runs_dir, name).read_text()))


def open_study(runs_dir: Path, st: StudySpec, max_steps: int, store=None):
    import optuna

    store = store or storage(runs_dir, st.name)
    asked = len(store.get_all_trials(store.get_study_id_from_name(st.name), deepcopy=False))
    return optuna.load_study(study_name=st.name, storage=store, sampler=sampler(st, asked),
                             pruner=pruner(st, max_steps))


def max_steps_of(st: StudySpec) -> int:
    return _step_size(st, {})[1]


def create(st: StudySpec, runs_dir: Path, log: Log = print) -> list:
    """Create the study (refused if one of that name exists) and queue its first trials."""
    import optuna

    from runspec.fs import atomic_write

    if meta_path(runs_dir, st.name).exists():
        raise SweepError(f"a study named {st.name!r} exists in {runs_dir} ({len(list(trial_runs(runs_dir, st.name)))} "
                         f"runs): follow it with cockpit sweep status {st.name}, or give [sweep] name another name")
    optuna.create_study(study_name=st.name, storage=storage(runs_dir, st.name), direction=st.direction)
    atomic_write(meta_path(runs_dir, st.name), json.dumps(asdict(st), indent=1))
    return tend_one(runs_dir, st, log)


# -- tending -------------------------------------------------------------------------------------------
def trial_runs(runs_dir: Path, name: str) -> dict[int, Any]:
    """The study's runs by trial number (run.json's ``trial``)."""
    from runspec.run.rundir import RunDir

    out = {}
    for path in sorted(runs_dir.glob(f"{name}-t*")):
        if not (path / "run.json").exists():
            continue
        rd = RunDir(path)
        try:
            meta = rd.read_meta()
        except Exception:  # noqa: BLE001 - a damaged run.json: that run is not the study's to count
            continue
        if meta.sweep == name and meta.trial is not None:
            out[int(meta.trial)] = rd
    return out


def _queue_trial(runs_dir: Path, st: StudySpec, number: int, params: dict) -> Any:
    from cockpit.queue import Queue
    from runspec.run.rundir import RunMeta

    meta = RunMeta(sweep=st.name, sweep_values=dict(params), trial=number)
    (rd,) = Queue(runs_dir).add_runs([(st.base, trial_overrides(st, params), f"{st.name}-t{number:03d}", meta, None)])
    return rd


def _tell(study, number: int, value: float | None = None, state=None) -> None:
    """study.tell, for a study driven by ask and tell: the grid sampler calls study.stop() when its
    grid is done, which Optuna allows only inside optimize(); the tell is stored before that
    (Optuna writes it in a finally), so the complaint is all there is to drop."""
    try:
        study.tell(number, value, state=state)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise


def _final(rd, metric: str) -> float | None:
    from runspec.run import events

    for ev in events.read_events(rd.events):
        if ev.kind == events.FINAL and metric in ev.metrics:
            return float(ev.metrics[metric])
    return None


def _rung_words(st: StudySpec, study, number: int, step: int, value: float) -> str:
    """Why a trial was pruned, in the figures the pruner saw at this step."""
    others = [t.intermediate_values[step] for t in study.get_trials(deepcopy=False)
              if t.number != number and step in t.intermediate_values]
    others = [v for v in others if v is not None and math.isfinite(v)]
    if st.prune.method == "median":
        med = sorted(others)[len(others) // 2] if others else value
        return f"pruned at step {step}: val {value:.4f}, worse than the median {med:.4f} of {len(others)} earlier trials"
    return (f"pruned at step {step}: val {value:.4f}, not in the best 1/{st.prune.reduction} of the "
            f"{len(others) + 1} trials at this rung")


def _report(st: StudySpec, study, trial, rd, log: Log, judge: bool = True) -> bool:
    """Report the trial's new running validations; True when the pruner stopped it. ``judge``
    False: only report them (a trial that ended before a round saw it, so that later trials are
    compared with it at its rungs)."""
    import optuna

    from cockpit.control import stop
    from cockpit.queue import Queue
    from runspec.run import events

    size = rd.events.stat().st_size if rd.events.exists() else 0
    if judge and _EVENTS_READ.get(rd.id) == size:  # nothing new since the last round
        return False
    _EVENTS_READ[rd.id] = size
    seen = trial.intermediate_values
    live = optuna.trial.Trial(study, trial._trial_id)
    for ev in events.read_events(rd.events):
        if ev.kind != events.EVAL or ev.step is None or ev.step in seen or st.prune.metric not in ev.metrics:
            continue
        value = float(ev.metrics[st.prune.metric])
        live.report(value, ev.step)
        if judge and live.should_prune():
            reason = _rung_words(st, study, trial.number, ev.step, value)
            _tell(study, trial.number, state=optuna.trial.TrialState.PRUNED)
            try:
                stop(Queue(rd.path.parent), rd.id, reason=reason)
            except Exception as e:  # noqa: BLE001 - it ended meanwhile: the trial is pruned all the same
                log(f"{rd.id}: {e}")
            log(f"{rd.id}: {reason}")
            return True
    return False


def tend_one(runs_dir: Path, st: StudySpec, log: Log = print) -> list:
    """One round for one study: tell what ended, prune what the pruner says, top it up. Returns
    the runs it queued."""
    import optuna

    from runspec.run.rundir import COMPLETED, FAILED, QUEUED, RUNNING, STOPPED

    State = optuna.trial.TrialState
    store = storage(runs_dir, st.name)
    study_id = store.get_study_id_from_name(st.name)
    trials = store.get_all_trials(study_id, deepcopy=False)
    ended = len(trials) >= st.trials or (st.budget_tokens is not None and
                                         store.get_study_user_attrs(study_id).get("budget_spent") is not None)
    if ended and not any(t.state == State.RUNNING for t in trials):
        return []  # finished: every trial asked and told; the worker's every round need not read its config and runs
    study = open_study(runs_dir, st, max_steps_of(st), store)
    runs = trial_runs(runs_dir, st.name)
    active, queued = 0, []
    for trial in study.get_trials(deepcopy=False, states=(State.RUNNING,)):
        rd = runs.get(trial.number)
        if rd is None:  # asked, never queued (the asker died between): queue it now, once
            rd = _queue_trial(runs_dir, st, trial.number, trial.params)
            queued.append(rd)
            log(f"{st.name}: trial {trial.number} had no run; queued {rd.id}")
            active += 1
            continue
        state = _state_of(rd)
        if state is None:
            continue
        if state.status in (COMPLETED, FAILED) and st.prune is not None:
            _report(st, study, trial, rd, log, judge=False)  # its rungs count for the trials after it
        if state.status == COMPLETED:
            value = _final(rd, st.objective)
            if value is None or not math.isfinite(value):
                _tell(study, trial.number, state=State.FAIL)
                log(f"{st.name}: trial {trial.number} ({rd.id}) completed without {st.objective}: failed")
            else:
                _tell(study, trial.number, value)
                log(f"{st.name}: trial {trial.number} ({rd.id}) {st.objective} = {value:.4f}")
        elif state.status == FAILED:
            _tell(study, trial.number, state=State.FAIL)
            log(f"{st.name}: trial {trial.number} ({rd.id}) failed: {state.reason}")
        elif state.status in (QUEUED, RUNNING):
            active += 1
            if state.status == RUNNING and st.prune is not None and _report(st, study, trial, rd, log):
                active -= 1
        elif state.status == STOPPED:
            pass  # stopped by hand: its trial waits (resume the run and it goes on), holding no slot
    asked = len(study.get_trials(deepcopy=False))
    dists = distributions(st)
    committed, stopping = tokens_committed(st, study, runs) if st.budget_tokens is not None else (0, 0)
    while active < st.parallel and asked < st.trials:
        if st.budget_tokens is not None:
            # the next trial counted to its end at the fixed settings: its values are not known
            # before it is asked (a space over the batch or the steps counts it at its own size
            # once asked, below)
            if committed + trial_tokens(st, {}) > st.budget_tokens:
                if active == 0 and stopping == 0 and not study.user_attrs.get("budget_spent"):
                    study.set_user_attr("budget_spent", committed)
                    log(f"{st.name}: budget spent ({committed:,} of {st.budget_tokens:,} tokens); no more trials")
                break
        trial = study.ask(dists)
        rd = _queue_trial(runs_dir, st, trial.number, trial.params)
        queued.append(rd)
        log(f"{st.name}: trial {trial.number}: {', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in trial.params.items())} -> {rd.id}")
        active += 1
        asked += 1
        committed += trial_tokens(st, trial.params)
    return queued


def tokens_committed(st: StudySpec, study, runs: dict[int, Any]) -> tuple[int, int]:
    """(tokens the study has trained or may yet train, runs still being stopped): each trial whose
    run ended, the steps it made; each run still queued or running, its whole length, even when
    its trial was pruned (the run trains on until the stop reaches it: its steps are known once it
    has stopped, a round later); a trial asked but not yet queued, its whole length."""
    import optuna

    from runspec.run.rundir import QUEUED, RUNNING

    total = stopping = 0
    for t in study.get_trials(deepcopy=False):
        state = _state_of(runs.get(t.number))
        live = state is not None and state.status in (QUEUED, RUNNING)
        asked = state is None and t.state == optuna.trial.TrialState.RUNNING
        stopping += live and t.state != optuna.trial.TrialState.RUNNING
        total += trial_tokens(st, t.params, None if live or asked else (state.step if state else 0))
    return total, stopping


def open_studies(runs_dir: Path) -> list[StudySpec]:
    d = runs_dir / ".cockpit" / "studies"
    return [read_spec(runs_dir, p.stem) for p in sorted(d.glob("*.json"))] if d.is_dir() else []


def tend(runs_dir: Path, log: Log = print) -> None:
    """Every study of the runs directory, one round (the worker's)."""
    for st in open_studies(runs_dir):
        try:
            tend_one(runs_dir, st, log)
        except (SweepError, ConfigError) as e:
            log(f"study {st.name}: {e}")


# -- what a person reads -----------------------------------------------------------------------------
def summary(runs_dir: Path, name: str) -> dict:
    """The study at a glance: its trials, the best so far, objective by trial, importance per key."""
    import optuna

    st = read_spec(runs_dir, name)
    study = open_study(runs_dir, st, max_steps_of(st))
    trials = study.get_trials(deepcopy=False)
    runs = trial_runs(runs_dir, name)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    better = min if st.direction == "minimize" else max
    best = better(done, key=lambda t: t.value) if done else None
    importance = {}
    if len(done) >= 4 and len(st.space) > 1:
        try:
            importance = optuna.importance.get_param_importances(study)
        except Exception:  # noqa: BLE001 - too few distinct values for the forest: no figure
            importance = {}
    counts: dict[str, int] = {}
    trained = 0
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
        state = _state_of(runs.get(t.number))
        trained += trial_tokens(st, t.params, state.step if state else 0)
    history, so_far = [], None
    for t in trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            so_far = t.value if so_far is None else better(so_far, t.value)
        history.append({"trial": t.number, "state": t.state.name.lower(), "value": t.value, "best": so_far,
                        "params": t.params, "run": runs[t.number].id if t.number in runs else None,
                        "pruned_at": max(t.intermediate_values) if t.state == optuna.trial.TrialState.PRUNED
                        and t.intermediate_values else None})
    return {"name": name, "method": st.method, "objective": st.objective, "direction": st.direction,
            "trials": st.trials, "parallel": st.parallel, "prune": asdict(st.prune) if st.prune else None,
            "tokens": trained, "budget_tokens": st.budget_tokens,
            "budget_spent": study.user_attrs.get("budget_spent") is not None,
            "counts": counts, "best": {"trial": best.number, "value": best.value, "params": best.params,
                                       "run": runs[best.number].id if best.number in runs else None} if best else None,
            "history": history, "importance": importance}


def _state_of(rd):
    """A trial run's state; None when it has no run yet or its state cannot be read."""
    from runspec.run.rundir import StateError

    try:
        return rd.read_state() if rd is not None else None
    except StateError:
        return None


def describe(s: dict) -> str:
    """``sweep status`` of a search: the best trial so far, the trials' objective by trial number
    (a terminal chart and a table) and how much each key mattered (fANOVA)."""
    from cockpit.analysis.termplot import Series, chart

    counts = ", ".join(f"{n} {k}" for k, n in sorted(s["counts"].items()))
    prune = s["prune"]
    lines = [f"{s['name']}: {s['method']} search, {s['objective']} ({s['direction']}), {len(s['history'])} of "
             f"{s['trials']} trials asked ({counts}), {s['parallel']} at a time"
             + (f"; pruned by {prune['method']} on {prune['metric']} from step {prune['min_steps']}, "
                f"reduction {prune['reduction']}" if prune else "")]
    b = s["best"]
    if b:
        lines.append(f"best so far: trial {b['trial']} ({b['run']}): {b['value']:.4f} with "
                     + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in b["params"].items()))
    done = [h for h in s["history"] if h["value"] is not None]
    if len(done) >= 2:
        # the best-so-far line first: the trials' points are drawn over it, not hidden under it
        lines.append(chart([Series("best so far", [h["trial"] for h in done], [h["best"] for h in done]),
                            Series("trial", [h["trial"] for h in done], [h["value"] for h in done], line=False)],
                           title=f"{s['objective']} by trial", xlabel="trial", ylabel=s["objective"].split("/")[-1]))
    if s["importance"]:
        lines.append("importance (fANOVA): " + ", ".join(f"{k} {v:.2f}" for k, v in s["importance"].items()))
    budget = s.get("budget_tokens")
    lines.append(f"tokens trained: {s.get('tokens', 0):,}" + (
        f" of a budget of {budget:,} ({s.get('tokens', 0) / budget:.0%})" if budget else "")
        + ("; budget spent, no more trials" if s.get("budget_spent") else ""))
    for h in s["history"]:
        value = f"{h['value']:.4f}" if h["value"] is not None else "-"
        state = h["state"] + (f" at step {h['pruned_at']}" if h["pruned_at"] is not None else "")
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in h["params"].items())
        lines.append(f"  {h['trial']:>4}  {h['run'] or '-':32s} {state:22s} {value:>8s}  {params}")
    return "\n".join(lines)
