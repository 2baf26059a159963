"""Creating, finding, launching and reading runs. Torch-free: configs are checked with the
engine's torch-free schema, and training happens in a ``python -m engine train`` subprocess.

Every state change goes through ``RunDir.transition``/``modify`` (compare-and-set under the
run's lock). A launcher first claims a run (``claim``: its state moves to ``running`` with a
launch token and the launcher as owner), then starts the engine with that token; the engine
attaches to the claim. Signals go only to a process whose pid *and* start time match what was
recorded, so a recycled pid is never signalled.
"""

from __future__ import annotations

import copy
import dataclasses
import glob
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from cockpit.format import ago
from runspec.config.load import config_from_dict, load_config, parse_overrides
from runspec.config.schema import BUILTIN_STORIES, ConfigError, RunConfig, node_problem, resolved_dict
from runspec.config.stages import parse_ref
from runspec.data.corpus import preflight
from runspec.fs import atomic_write
from runspec.run import events, lifecycle
from runspec.run.process import Proc, start_token, this_host
from runspec.run.rundir import (
    BROKEN,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    LAUNCH_ENV,
    QUEUED,
    RUNNING,
    STOPPED,
    RunDir,
    RunMeta,
    RunState,
    StateError,
    new_run_id,
)


class RunError(ValueError):
    """A one-line problem with a run (not found, already running, nothing to resume)."""


def runs_root(explicit: str | None = None) -> Path:
    root = Path(explicit or os.environ.get("COCKPIT_RUNS_DIR") or "runs")
    if root.exists() and not root.is_dir():
        raise RunError(f"--runs-dir {root}: is a file, not a directory; give a directory for run directories")
    return root


def _absolute_data_path(cfg: RunConfig) -> None:
    # resolved.toml must not depend on the directory the run is later resumed from
    if cfg.data.path != BUILTIN_STORIES:
        cfg.data.path = str(Path(cfg.data.path).expanduser().resolve())


def write_resolved(rd: RunDir, cfg: RunConfig) -> None:
    atomic_write(rd.resolved, tomli_w.dumps(resolved_dict(cfg)))  # a resume rewrites it: never half a file


def check_config(config_path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """The config, checked, with its data path checked as far as that is cheap (exists, known
    file types, parquet columns): a bad one is refused before anything is created."""
    cfg = load_config(config_path, overrides)
    if cfg.data.path != BUILTIN_STORIES:
        preflight(cfg.data.path, cfg.data.text_column)
    return cfg


def check_ranks(cfg: RunConfig, force: bool, source: str, ranks: int | None = None) -> None:
    """A run that would start more ranks here than this machine has GPUs or cores, or asks for
    CUDA on a machine without a GPU, is refused in one line, unless forced."""
    from cockpit.gpu import GpuMonitor, ranks_refusal

    device = cfg.train.device
    if device.startswith("cuda") and not force and not GpuMonitor().device_count():
        # refused here, before a run directory exists (the engine would fail at start, after it)
        raise RunError(f"[train] device = {device!r}: this machine shows no NVIDIA GPU (NVML); use device = 'auto' "
                       f"or 'cpu', or pass --force if torch sees one that NVML does not")
    n = ranks if ranks is not None else cfg.train.gpus
    why = "" if force else ranks_refusal(n, cfg.train.device)
    if why:
        flag = f"--nproc {n}" if source == "--nproc" else f"[train] gpus = {n}"
        raise RunError(f"{flag}: {why}; ask for fewer, or pass --force to start them anyway")


def create_run(config_path: str | Path, overrides: list[str] | None = None, name: str | None = None,
               runs_dir: Path | None = None, meta: RunMeta | None = None, now: bool = False,
               checked: RunConfig | None = None) -> RunDir:
    """Check the config (unless ``checked`` is what check_config gave for it), then create
    ``runs/<id>/`` (config.toml, resolved.toml, run.json, state queued). A bad config creates
    nothing. ``now``: the run starts at once, so a parent it initialises from must have completed."""
    cfg = copy.deepcopy(checked) if checked is not None else check_config(config_path, overrides)
    _absolute_data_path(cfg)
    root = runs_dir or runs_root()
    parent = resolve_init(cfg, root) if cfg.init.from_ else None
    if parent is not None and parent.run is not None:
        cfg = inherit_shape(cfg, parent.run, config_path, overrides)
    if now and parent is not None and parent.pending:
        raise RunError(f"[init] from = '{parent.name}': that run has not completed; queue this one instead "
                       f"(cockpit queue add {config_path}): the worker starts it when {parent.name} completes")
    root.mkdir(parents=True, exist_ok=True)
    rd = claim_run_dir(root, name or Path(config_path).stem)
    try:
        shutil.copyfile(config_path, rd.config)
        if overrides:
            with open(rd.config, "a", encoding="utf-8") as f:
                f.write("\n# overrides given on the command line (--set; as data in run.json):\n")
                f.writelines(f"#   {o}\n" for o in overrides)
        write_resolved(rd, cfg)
        meta = meta or RunMeta()
        meta.name = name or Path(config_path).stem
        meta.config_source = str(Path(config_path).resolve())
        meta.created = round(time.time(), 3)
        meta.overrides = parse_overrides(overrides or [])
        if parent is not None:
            meta.parent, meta.parent_step = parent.name, parent.step
            if parent.pending and parent.name not in meta.depends_on:
                meta.depends_on = [*meta.depends_on, parent.name]  # the worker starts it once the parent completes
        rd.write_meta(meta)
        rd.create_state(QUEUED)  # state.json last: readers only count a directory with one
    except BaseException:
        shutil.rmtree(rd.path, ignore_errors=True)
        raise
    return rd


@dataclass
class Parent:
    name: str  # run id, or the checkpoint file's path
    step: int | None  # None: the newest checkpoint when the run starts
    pending: bool  # the parent has not completed yet
    run: RunDir | None = None  # the parent run (None for a checkpoint file)


def inherit_shape(cfg: RunConfig, parent: RunDir, config_path: str | Path, overrides: list[str] | None) -> RunConfig:
    """A fine-tune takes its parent's final shape (after its growth stages; adapters are merged
    when it loads): every [model] key the child's own config (or --set) does not write comes
    from the parent's last stage, so a grown parent is not restated by hand. A family table the
    child writes ([model.attention], ...) is the child's whole."""
    from runspec.config.load import apply_overrides
    from runspec.config.plan import stage_plan
    from runspec.config.schema import to_dict, tomllib

    try:
        final = stage_plan(parent.read_config()).configs[-1].model
    except ConfigError as e:
        raise RunError(f"[init] from = '{parent.id}': its config cannot be read ({e})") from None
    raw = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
    apply_overrides(raw, overrides or [])
    written = raw.get("model", {}) if isinstance(raw.get("model"), dict) else {}
    data = to_dict(cfg)
    data["model"] = {**dataclasses.asdict(final), **written}
    try:
        return config_from_dict(data, f"{config_path} ([model] from {parent.id}'s final stage)")
    except ConfigError as e:
        raise RunError(str(e)) from None


def resolve_init(cfg: RunConfig, root: Path) -> Parent:
    """[init] from, checked and made absolute in the config (the engine runs elsewhere): a
    checkpoint file, or a run (id, prefix or directory) with an optional ':STEP' that exists or
    may still come (a parent that has not completed)."""
    ref = cfg.init.from_
    name, step = parse_ref(ref)
    file = Path(name).expanduser()
    if file.is_file():
        cfg.init.from_ = str(file.resolve()) + (f":{step}" if step is not None else "")
        return Parent(str(file.resolve()), step, False)
    try:
        parent = find_run(name, root)
    except RunError as e:
        raise RunError(f"[init] from = '{ref}': {e}") from None
    status = parent.read_state().status
    steps = parent.checkpoint_steps()
    if step is not None and status == COMPLETED and step not in steps:
        raise RunError(f"[init] from = '{ref}': {parent.id} has no checkpoint at step {step} "
                       f"(it has {', '.join(map(str, steps)) or 'none'})")
    if status in (FAILED,) and not steps:
        raise RunError(f"[init] from = '{ref}': {parent.id} failed without a checkpoint; pick another run")
    cfg.init.from_ = str(parent.path.resolve()) + (f":{step}" if step is not None else "")
    # wait for the parent unless the checkpoint asked for is already there
    return Parent(parent.id, step, status != COMPLETED and (step is None or step not in steps), parent)


def claim_run_dir(root: Path, name: str) -> RunDir:
    """A new, empty run directory. mkdir is atomic, so two processes creating runs of the
    same name in the same second get different ids instead of one overwriting the other."""
    while True:
        run_id = new_run_id(root, name)
        try:
            (root / run_id).mkdir()
            return RunDir(root / run_id)
        except FileExistsError:
            continue
        except NotADirectoryError:
            raise RunError(f"{root}: is not a directory; give --runs-dir a directory") from None


RUN_STAMP = re.compile(r"-\d{8}-\d{6}(-\d+)?")  # what new_run_id puts after a run's name


def find_run(ref: str, runs_dir: Path | None = None) -> RunDir:
    """A run by path, exact id, exact name (the id without its creation stamp), or unique id
    prefix, in that order: 'lora' is the run named lora even when lora_grow-... exists too."""
    root = runs_dir or runs_root()
    p = Path(ref)
    if (p / "state.json").exists():
        return RunDir(p)
    if (root / ref / "state.json").exists():
        return RunDir(root / ref)
    is_prefix = root.is_dir() and "/" not in ref and ref not in ("", ".", "..")
    matches = sorted(d for d in root.glob(f"{glob.escape(ref)}*") if (d / "state.json").exists()) if is_prefix else []
    named = [d for d in matches if RUN_STAMP.fullmatch(d.name[len(ref):])]
    for found in (named, matches):
        if len(found) == 1:
            return RunDir(found[0])
        if len(found) > 1:
            raise RunError(f"'{ref}' matches {len(found)} runs: {candidates(found)}; give more of the id")
    raise RunError(f"no run '{ref}' under {root}/; list them with: cockpit status")


def sweep_members(sweep: str, every: list[RunDir]) -> list[RunDir]:
    """The runs of a sweep, named by its id or a unique prefix of it (as `cockpit sweep ls` lists them)."""
    metas = {rd.id: rd.read_meta() for rd in every}
    ids = sorted({m.sweep for m in metas.values() if m.sweep and m.sweep.startswith(sweep)})
    if sweep in ids:
        ids = [sweep]
    if len(ids) != 1:
        raise RunError(f"--sweep {sweep}: " + (f"matches several sweeps ({', '.join(ids[:5])}); give more of it"
                                               if ids else "no such sweep; list them with: cockpit sweep ls"))
    return [rd for rd in every if metas[rd.id].sweep == ids[0]]


def select_runs(refs: list[str], sweeps: list[str], runs_dir: Path) -> list[RunDir]:
    """Runs named one by one (find_run), by a glob over run ids ('abl-*'), or by sweep, each once,
    in the order given (a glob's and a sweep's in id order)."""
    chosen: list[RunDir] = []
    for ref in refs:
        if any(ch in ref for ch in "*?["):
            hits = sorted(d for d in runs_dir.glob(ref) if (d / "state.json").exists())
            if not hits:
                raise RunError(f"'{ref}' matches no run under {runs_dir}/; list them with: cockpit status")
            chosen += [RunDir(d) for d in hits]
        else:
            chosen.append(find_run(ref, runs_dir))
    every = list_runs(runs_dir) if sweeps else []
    for sweep in sweeps:
        chosen += sorted(sweep_members(sweep, every), key=lambda rd: rd.id)
    return list({rd.id: rd for rd in chosen}.values())


def candidates(dirs: list[Path], most: int = 5) -> str:
    """'lora-20261201-101500 (completed, 3 h ago), ...': which run is which, for an ambiguity."""
    now = time.time()
    out = []
    for d in dirs[:most]:
        try:
            st = RunDir(d).read_state()
            out.append(f"{d.name} ({st.status}, {ago(now - (st.updated or now))})")
        except StateError:
            out.append(f"{d.name} (broken)")
    return ", ".join(out) + (f" and {len(dirs) - most} more" if len(dirs) > most else "")



def list_runs(runs_dir: Path) -> list[RunDir]:
    """Every run directory (one with a state.json), in id order."""
    if not runs_dir.is_dir():
        return []
    return [RunDir(d) for d in sorted(runs_dir.iterdir()) if not d.name.startswith(".") and (d / "state.json").exists()]


@dataclass
class Listed:
    """A run as every command reads it: its state, or why it could not be read."""

    rd: RunDir
    state: RunState | None
    problem: str = ""  # one line, when state is None

    @property
    def status(self) -> str:
        return self.state.status if self.state is not None else BROKEN


def read_states(runs_dir: Path) -> dict[str, Listed]:
    """Every run with its state; a damaged state.json is a one-line problem on that run,
    never an exception for the whole command (status, queue, worker, TUI all read this)."""
    out = {}
    for rd in list_runs(runs_dir):
        x = listed(rd)
        if x.state is not None or rd.path.is_dir():  # (removed since the listing: gone, not broken)
            out[rd.id] = x
    return out


def listed(rd: RunDir) -> Listed:
    """One run as ``read_states`` lists it."""
    try:
        return Listed(rd, rd.read_state())
    except StateError as e:  # damaged, or removed since the listing
        return Listed(rd, None, str(e))


_configs: dict[tuple[Path, int], RunConfig | None] = {}


def run_config(rd: RunDir) -> RunConfig | None:
    """A run's resolved.toml, read again only when it changes (the tabs ask every second);
    None when it is missing or broken."""
    try:
        key = (rd.resolved, rd.resolved.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in _configs:
        try:
            _configs[key] = rd.read_config()
        except ConfigError:
            _configs[key] = None
    return _configs[key]


# -- processes ------------------------------------------------------------------------------

def engine_alive(rd: RunDir, state: RunState) -> bool:
    """The run's recorded engine is still that process (pid and start time match). A run
    launched on another machine (a shared runs directory) counts as alive: its pid means
    nothing here, and only that machine may decide it is gone."""
    if state.elsewhere():
        return True
    proc = state.engine()
    if proc is None:
        return False
    if proc.start:
        return proc.alive()
    # recorded before start times were: accept only a live process whose command line is this run's engine
    if start_token(proc.pid) is None:
        return False
    try:
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            cmdline = f.read()
        return b"engine" in cmdline and rd.id.encode() in cmdline
    except OSError:
        return False


def starting(state: RunState) -> bool:
    """Claimed by a live launcher whose engine has not recorded itself yet."""
    owner = state.owner_proc()
    return state.status == RUNNING and state.pid is None and owner is not None and owner.alive()


def signal_engine(rd: RunDir, state: RunState, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to the run's engine if, and only if, it is still that process (on this machine)."""
    if state.elsewhere() or not engine_alive(rd, state):
        return False
    try:
        os.kill(state.pid, sig)  # type: ignore[arg-type]
    except ProcessLookupError:
        return False
    return True


def new_launch_token() -> str:
    return secrets.token_hex(8)


def claim(rd: RunDir, owner: Proc, expected, slot: str | None = None) -> str:
    """Move a run to ``running`` on behalf of a launcher, before its engine exists. Returns the
    launch token to hand the engine; raises StateConflict if the run was not in ``expected``."""
    token = new_launch_token()
    rd.transition("claim", expected=expected, owner=owner.to_dict(), host=this_host(), slot=slot, launch=token, pid=None,
                  pid_start=None, exit_code=None, stop_requested=False)
    return token


def start_engine(rd: RunDir, launch: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``python -m engine train`` for a claimed run, output to engine.log, and record
    its pid and start time at once (the engine records them too when it attaches).

    It gets its own session, so a Ctrl-C or a closing terminal reaches only the cockpit,
    which then asks the engine to stop cleanly (SIGINT -> checkpoint -> stopped)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", LAUNCH_ENV: launch, **(extra_env or {})}
    with open(rd.log, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "engine", "train", str(rd.path)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
    try:
        rd.update(expected=RUNNING, guard=lambda s: "" if s.launch == launch else "claimed by another launcher",
                  pid=proc.pid, pid_start=start_token(proc.pid))
    except StateError:
        pass  # the engine already finished (or failed at once) and recorded its end
    return proc


def last_log_line(rd: RunDir) -> str:
    """The last non-empty line of engine.log: context for a death, not a cause."""
    lines = [ln for ln in events.tail_bytes(rd.log).splitlines() if ln.strip()]
    return lines[-1].strip()[:200] if lines else ""


def exit_reason(code: int | None, step: int) -> tuple[str, str]:
    """(state, reason) for an engine that ended without recording its end."""
    if code is None:
        return INTERRUPTED, f"engine process vanished at step {step} (exit status unknown)"
    if code < 0:
        try:
            name = f" ({signal.Signals(-code).name})"
        except ValueError:
            name = ""
        return INTERRUPTED, f"engine killed by signal {-code}{name} at step {step}"
    return FAILED, f"engine exited with code {code} at step {step} without recording why"


def record_engine_exit(rd: RunDir, code: int | None, launch: str | None = None) -> RunState:
    """After an engine is gone: if it died without recording its end (killed, crashed hard),
    mark the run ``interrupted`` (a signal: resumable from its last checkpoint) or ``failed``
    (an exit code), with the last line of engine.log as context. ``launch`` names the claim
    this engine belonged to: a newer claim is left alone."""
    context = last_log_line(rd)

    def change(state: RunState) -> None:
        if state.status == RUNNING and (launch is None or state.launch == launch):
            status, reason = exit_reason(code, state.step)
            if status == INTERRUPTED and state.stop_requested:  # it was asked to stop: do not resume it
                status, reason = STOPPED, f"stopped ({reason})"
            state.move(lifecycle.ENDS[status], reason + (f"; last log line: {context}" if context else ""), exit_code=code,
                       pid=None, pid_start=None, launch=None)
        elif code is not None and state.exit_code is None:
            state.exit_code = code

    try:
        return rd.modify(change)
    except StateError as e:
        raise RunError(str(e)) from None


def prepare_resume(rd: RunDir, max_steps: int | None, max_time: str | None, nproc: int | None = None,
                   nodes: int | None = None, rdzv: str | None = None) -> RunConfig:
    """Apply --max-steps/--max-time/--nproc to resolved.toml after checking the run can continue.
    Another number of ranks continues the data stream where it stopped, each step drawing
    batch_size x grad_accum windows per rank: the global batch changes with the ranks."""
    state = read_state(rd)
    if state.status == RUNNING and (engine_alive(rd, state) or starting(state)):
        raise RunError(f"{rd.id} is running (pid {state.pid or 'starting'}); stop it first")
    cfg = rd.read_config()
    data = resolved_dict(cfg)
    if max_steps is not None:
        data["train"]["max_steps"] = max_steps
    if max_time is not None:
        data["train"]["max_time"] = max_time
    if nproc is not None:
        data["train"]["gpus"] = nproc
    if nodes is not None:  # another node count: like --nproc, the global batch follows the ranks
        data["train"]["nodes"] = nodes
    if rdzv is not None:
        data["train"]["rdzv"] = rdzv
    try:
        cfg = config_from_dict(data, "--max-steps/--max-time/--nproc/--nodes/--rdzv")
    except ConfigError as e:
        raise RunError(str(e)) from None
    steps = rd.checkpoint_steps()
    done = steps[-1] if steps else 0
    if done > cfg.train.max_steps:  # (a --max-steps below what was trained: not "20/5 steps")
        raise RunError(f"{rd.id} has already trained {done} steps, more than --max-steps {cfg.train.max_steps}; "
                       f"pass --max-steps N with N > {done} to train further")
    if done == cfg.train.max_steps:
        raise RunError(f"{rd.id} has already trained {done}/{cfg.train.max_steps} steps; "
                       f"pass --max-steps N with N > {done} to train further")
    why = node_problem(cfg.train.nodes, 0, cfg.train.rdzv)
    if why:
        raise RunError(f"{rd.id}: {why}")
    write_resolved(rd, cfg)
    return cfg


def read_state(rd: RunDir) -> RunState:
    """A run's state for a command that acts on it: damage is a RunError (one line, exit 2)."""
    try:
        return rd.read_state()
    except StateError as e:
        raise RunError(str(e)) from None
