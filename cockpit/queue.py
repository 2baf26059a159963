"""The run queue: an explicit order of queued run ids plus a pause flag, in
``runs/.cockpit/queue.json``. The CLI, the TUI and the worker all edit it, so every change is
read-modify-write under an exclusive file lock and lands with an atomic replace: no update is
ever lost and no reader sees half a file. Before each replace the previous queue is kept as
``queue.json.bak``. A damaged queue.json is never read as an empty queue: it is recovered from
the backup (or, failing that, from the run directories in state ``queued``), the damaged file
is kept beside it, and the recovery is reported. The pause is also kept as a marker file,
``queue.paused``, beside it, so that a queue rebuilt without a backup stays paused as it was.

Run states stay in each run's state.json and change only by compare-and-set
(``RunDir.transition``), so a stop and a start racing for the same run have one winner.
The queue lock and a run's lock are never held together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

from cockpit.runs import RunError, check_config, create_run, find_run, read_states
from runspec.fs import atomic_write, locked
from runspec.run.rundir import COMPLETED, FAILED, INTERRUPTED, QUEUED, RUNNING, RunDir, RunMeta, StateError


def control_dir(runs_dir: Path) -> Path:
    d = runs_dir / ".cockpit"
    try:
        d.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunError(f"{runs_dir}: is not a directory; give --runs-dir a directory") from None
    return d


def _parse(text: str) -> dict | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("order"), list):
        return None
    if not all(isinstance(x, str) for x in data["order"]):
        return None
    held = data.get("held", [])
    held = [x for x in held if isinstance(x, str)] if isinstance(held, list) else []
    return {"order": list(data["order"]), "paused": bool(data.get("paused", False)), "held": held}


def _pause_note(paused: bool) -> str:
    return ("it stays paused, as it was: 'cockpit queue resume' lets a worker start runs" if paused else
            "it is not paused: a worker will start its runs")


class Queue:
    def __init__(self, runs_dir: Path, warn: Callable[[str], None] | None = None):
        self.runs_dir = runs_dir
        self.dir = control_dir(runs_dir)
        self.file = self.dir / "queue.json"
        self.backup = self.dir / "queue.json.bak"
        self.pause_marker = self.dir / "queue.paused"  # present while paused: survives a damaged queue.json
        # how a recovery is reported: the CLI prints it, the worker logs it, the TUI shows it
        self.warn = warn or (lambda message: None)
        self.recovered: str = ""  # the last recovery this object made, for the TUI

    # -- storage ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with locked(self.dir / "queue.lock"):
            yield

    def _load(self) -> tuple[dict, str]:
        """(queue, problem): the queue from queue.json, or recovered when it is damaged."""
        try:
            text = self.file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"order": [], "paused": False, "held": []}, ""
        except (OSError, UnicodeDecodeError) as e:
            text = f"unreadable: {e}"
        data = _parse(text)
        if data is not None:
            return data, ""
        try:
            backup = _parse(self.backup.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            backup = None
        queued = self._queued_runs()
        marked = self.pause_marker.exists()
        if backup is not None:
            # the backup is one edit behind at most: add queued runs it does not know, drop ones no longer queued
            order = [r for r in backup["order"] if r in queued] + [r for r in queued if r not in backup["order"]]
            paused = marked or backup["paused"]
            return ({"order": order, "paused": paused, "held": [r for r in backup["held"] if r in order]},
                    f"recovered {len(order)} queued run(s) from queue.json.bak; {_pause_note(paused)}")
        return ({"order": queued, "paused": marked, "held": []},
                f"rebuilt the queue from {len(queued)} run(s) in state queued; {_pause_note(marked)}")

    def _queued_runs(self) -> list[str]:
        """Runs in state queued, oldest queuing first: the order a rebuilt queue gets."""
        listed = [x for x in read_states(self.runs_dir).values() if x.state is not None and x.status == QUEUED]
        listed.sort(key=lambda x: (x.state.updated, x.rd.id))
        return [x.rd.id for x in listed]

    def _recover(self, data: dict, problem: str) -> dict:
        """Under the lock: keep the damaged file beside the queue, write the recovered queue
        and report what happened."""
        if self.file.exists():
            kept = self.dir / f"queue.json.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
            shutil.copyfile(self.file, kept)
            problem = f"{self.file} was damaged (kept as {kept.name}); {problem}"
        atomic_write(self.file, json.dumps(data, indent=1))
        self._mark_pause(data["paused"])
        self.recovered = problem
        self.warn(problem)
        return data

    def read(self) -> dict:
        """The queue. A damaged file is recovered (under the lock) and reported, once."""
        data, problem = self._load()
        if not problem:
            return data
        with self._lock():
            data, problem = self._load()  # another process may have recovered it meanwhile
            return self._recover(data, problem) if problem else data

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict]:
        with self._lock():
            data, problem = self._load()
            if problem:
                data = self._recover(data, problem)
            yield data
            if self.file.exists():  # the previous queue, one edit behind (atomically: never half a backup)
                atomic_write(self.backup, self.file.read_bytes())
            atomic_write(self.file, json.dumps(data, indent=1))
            self._mark_pause(data["paused"])

    def _mark_pause(self, paused: bool) -> None:
        if paused:
            self.pause_marker.touch()
        else:
            self.pause_marker.unlink(missing_ok=True)

    @property
    def order(self) -> list[str]:
        return self.read()["order"]

    @property
    def paused(self) -> bool:
        return self.read()["paused"]

    def run(self, ref: str) -> RunDir:
        return find_run(ref, self.runs_dir)

    # -- edits --------------------------------------------------------------------------
    def add(self, configs: list[str], name: str | None = None, front: bool = False, after: str | None = None,
            overrides: list[str] | None = None, tags: list[str] | None = None,
            depends_on: list[str] | None = None, meta: RunMeta | None = None,
            checked: list | None = None, seeds=None) -> list[RunDir]:
        """Check everything first (every config, --after, dependencies): a bad one changes
        nothing. Then create the runs and enqueue them. ``checked``: the configs' RunConfigs
        from check_config already (the Queue tab's dialog checks before it closes), so each
        config is read and checked once. ``seeds`` (cockpit.seeds.Seeds): each config once per
        seed, named NAME-s<seed>."""
        cfgs = checked if checked is not None else [check_config(c, overrides) for c in configs]
        for c, cfg in zip(configs, cfgs):  # a worker starts runs on its own machine only
            if cfg is not None and cfg.train.nodes > 1:
                raise RunError(f"{c}: [train] nodes = {cfg.train.nodes}: a run across machines is started on each of "
                               f"them, not queued: cockpit --headless run CONFIG --nodes N --node-rank K on every "
                               f"node, or cockpit slurm CONFIG on a cluster")
        if seeds is not None:  # each config once per seed: runs that differ only in train.seed
            from cockpit.seeds import SEED_KEY, seed_name

            planned = [(c, [*(overrides or []), f"{SEED_KEY}={s}"], seed_name((name if len(configs) == 1 else None) or Path(c).stem, s))
                       for c, cfg in zip(configs, cfgs) for s in seeds.values(cfg.train.seed)]
            configs = [c for c, _, _ in planned]
            cfgs = [check_config(c, ov) for c, ov, _ in planned]
        else:
            planned = [(c, overrides, name if len(configs) == 1 else None) for c in configs]
        anchor = self.run(after).id if after else None
        if anchor is not None and anchor not in self.order:
            raise RunError(f"--after {after}: {anchor} is not queued; give a queued run (cockpit queue ls)")
        deps = [self.run(d).id for d in depends_on or []]
        for dep in deps:  # a run that waits on a failed one could only wait forever
            if self.status_of(dep) == FAILED:
                raise RunError(f"--depends-on {dep}: it failed, so this run would never start; fix it and "
                               f"'cockpit queue retry {dep}' first, then add this run")
        items = [(c, ov, nm,
                  dataclasses.replace(meta or RunMeta(), tags=list(tags or (meta.tags if meta else [])),
                                      depends_on=deps or (meta.depends_on if meta else [])), cfg)
                 for (c, ov, nm), cfg in zip(planned, cfgs)]
        return self.add_runs(items, front=front, anchor=anchor)

    def add_runs(self, items: list[tuple], front: bool = False, anchor: str | None = None) -> list[RunDir]:
        """Create runs (config, overrides, name, meta, the checked RunConfig or None) and enqueue
        them together, in order: all or none (a sweep's runs, or the configs of one ``queue add``)."""
        created = []
        try:
            for config, overrides, name, meta, cfg in items:
                created.append(create_run(config, overrides, name, self.runs_dir, meta, checked=cfg))
            ids = [rd.id for rd in created]
            with self.edit() as q:
                if front:
                    q["order"][0:0] = ids
                elif anchor is not None and anchor in q["order"]:
                    i = q["order"].index(anchor) + 1
                    q["order"][i:i] = ids
                else:  # (the anchor started meanwhile: the end of the queue is the nearest place)
                    q["order"].extend(ids)
        except BaseException:
            for rd in created:  # nothing half-queued: a run directory exists only if it is in the queue
                shutil.rmtree(rd.path, ignore_errors=True)
            raise
        return created

    def move(self, ref: str, to: int | None = None, up: bool = False, down: bool = False) -> int:
        run_id = self.run(ref).id
        with self.edit() as q:
            order = q["order"]
            if run_id not in order:
                raise RunError(f"{run_id} is not queued; only queued runs have a position")
            i = order.index(run_id)
            j = (to - 1) if to is not None else i - 1 if up else i + 1 if down else i
            j = max(0, min(len(order) - 1, j))
            order.insert(j, order.pop(i))
            return j + 1

    def drop(self, run_id: str) -> None:
        """Take a run out of the order (it is no longer queued)."""
        with self.edit() as q:
            if run_id in q["order"]:
                q["order"].remove(run_id)
            if run_id in q["held"]:
                q["held"].remove(run_id)

    def set_paused(self, paused: bool) -> None:
        with self.edit() as q:
            q["paused"] = paused

    @property
    def held(self) -> list[str]:
        return self.read()["held"]

    def hold(self, run_ids: list[str], held: bool = True) -> tuple[list[str], list[str]]:
        """Hold queued runs in place (the worker skips them) or let them go, in one edit.
        Returns (changed, not queued: left as they are)."""
        with self.edit() as q:
            queued = [r for r in run_ids if r in q["order"]]
            if held:
                q["held"] = q["held"] + [r for r in queued if r not in q["held"]]
            else:
                q["held"] = [r for r in q["held"] if r not in queued]
        return queued, [r for r in run_ids if r not in queued]

    # -- for the worker -----------------------------------------------------------------
    def next_ready(self, skip: Callable[[str, str], None] = lambda run_id, why: None,
                   accept: Callable[[RunDir], bool] = lambda rd: True) -> RunDir | None:
        """The first queued run that may start now: still queued, its state readable, every
        run it depends on completed. Entries no longer queued are dropped from the order;
        a damaged one is dropped and reported through ``skip``; waiting ones stay, except those
        whose dependency failed or is gone: they can never start, so they are failed (with the
        reason) instead of waiting for ever. ``accept`` sees each ready run in order and says
        whether it may start now (the worker's GPU policy); the first it accepts is taken."""
        blocked: list[tuple[RunDir, str]] = []
        try:
            return self._next_ready(skip, blocked, accept)
        finally:  # run state changes after the queue lock is released: the two are never held together
            failed = []
            for rd, why in blocked:
                try:
                    rd.transition("fail", expected=QUEUED, reason=why)
                    skip(rd.id, why)
                    failed.append(rd.id)
                except StateError:
                    pass  # someone else moved it meanwhile (a retry, a removal): theirs stands
            if failed:
                with self.edit() as q:
                    q["order"] = [r for r in q["order"] if r not in failed]

    def _next_ready(self, skip: Callable[[str, str], None], blocked: list[tuple[RunDir, str]],
                    accept: Callable[[RunDir], bool]) -> RunDir | None:
        with self.edit() as q:
            if q["paused"]:
                return None
            keep = []
            chosen = None
            for run_id in q["order"]:
                if chosen is not None:
                    keep.append(run_id)
                    continue
                rd = RunDir(self.runs_dir / run_id)
                try:
                    state = rd.read_state()
                except StateError as e:
                    skip(run_id, str(e))
                    continue
                if state.status != QUEUED:
                    continue
                if run_id in q["held"]:  # queue pause RUN / --sweep: kept in place, not started
                    keep.append(run_id)
                    continue
                waiting = self.waiting_for(rd)
                if waiting:
                    status = self.status_of(waiting)
                    if status in (FAILED, "missing"):
                        blocked.append((rd, f"it depends on {waiting}, which {'failed' if status == FAILED else 'is gone'}; "
                                            f"retry that run, then this one (cockpit queue retry)"))
                    keep.append(run_id)  # (a blocked one is failed, and dropped, after the lock is released)
                    continue
                if not accept(rd):
                    keep.append(run_id)
                    continue
                chosen = rd
            q["order"] = keep
            return chosen

    def status_of(self, run_id: str) -> str:
        try:
            return RunDir(self.runs_dir / run_id).read_state().status
        except StateError:
            return "missing"

    def waiting_for(self, rd: RunDir) -> str:
        for dep in rd.read_meta().depends_on:
            if self.status_of(dep) != COMPLETED:
                return dep
        return ""

    def can_progress(self) -> bool:
        """Whether a queued run may still start without the user: one is ready, or waits on a
        run that is queued, running or will be resumed (interrupted). Runs that wait only on
        stopped runs need the user to resume those."""
        held = set(self.held)
        for run_id in self.order:
            rd = RunDir(self.runs_dir / run_id)
            if self.status_of(run_id) != QUEUED or run_id in held:  # a held run waits for the user
                continue
            dep = self.waiting_for(rd)
            if not dep or self.status_of(dep) in (QUEUED, RUNNING, INTERRUPTED):
                return True
        return False

    def push_front(self, run_ids: list[str]) -> None:
        with self.edit() as q:
            q["order"] = run_ids + [r for r in q["order"] if r not in run_ids]
