"""CPU threads on a shared machine: the choice from the free cores and the load, the wait policy,
its adapting while training, and what the headless line and the Training tab say about it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import PATIENCE

from engine import cpu_threads
from engine.cpu_threads import Governor, ThreadPlan, plan, wanted
from runspec.run import events
from runspec.run.metrics import CPU_OTHERS, THREADS, busy_note


@pytest.mark.parametrize("cores, others, most, passive, expected", [
    (2, 0.0, 2, False, 2),  # idle: every core
    (2, 1.0, 2, True, 1),  # one core busy: the free one (1 thread: 142 ms a step, 2 passive: 152)
    (2, 2.0, 2, True, 2),  # every core wanted, passive: all of them, each thread its fair share (158 vs 223)
    (2, 2.0, 2, False, 1),  # every core wanted, spinning: one thread (223 vs 445)
    (16, 8.0, 16, True, 8),
    (16, 3.2, 4, False, 4),  # never more than the run may take (OMP_NUM_THREADS, a worker's slots)
    (2, None, 2, False, 2),  # load unknown: as many as it may take
])
def test_threads_follow_the_free_cores(cores, others, most, passive, expected):
    assert wanted(cores, others, most, passive) == expected


def _plan_with(monkeypatch, others: float | None, cores: int = 2, **kw) -> tuple[ThreadPlan, dict]:
    monkeypatch.setattr(cpu_threads, "available_cores", lambda: cores)
    monkeypatch.setattr(cpu_threads.DemandMeter, "others", lambda self: others)
    env = dict(kw.pop("env", {}))
    return plan(kw.pop("config_threads", 0), env, sample_s=0.0), env


def test_a_busy_machine_gets_passive_waiting_and_an_idle_one_keeps_openmps(monkeypatch):
    busy, env = _plan_with(monkeypatch, 2.0)
    assert busy.passive and env["OMP_WAIT_POLICY"] == "PASSIVE" and busy.threads == 2 and busy.source == "auto"
    idle, env = _plan_with(monkeypatch, 0.1)
    assert not idle.passive and "OMP_WAIT_POLICY" not in env and idle.threads == 2


def test_a_wait_the_user_set_is_theirs(monkeypatch):
    p, env = _plan_with(monkeypatch, 2.0, env={"GOMP_SPINCOUNT": "300000"})
    assert not p.passive and "OMP_WAIT_POLICY" not in env and p.threads == 1  # spinning on a full machine: one
    p, env = _plan_with(monkeypatch, 0.0, env={"OMP_WAIT_POLICY": "passive"})
    assert p.passive and env["OMP_WAIT_POLICY"] == "passive"


def test_config_pins_and_omp_num_threads_caps(monkeypatch):
    pinned, _ = _plan_with(monkeypatch, 2.0, config_threads=3)
    assert (pinned.threads, pinned.source, pinned.adapts) == (3, "config", False)
    capped, _ = _plan_with(monkeypatch, 0.0, cores=8, env={"OMP_NUM_THREADS": "2"})
    assert (capped.threads, capped.most, capped.source, capped.adapts) == (2, 2, "env", True)


def test_a_cgroup_quota_caps_the_cores(tmp_path, monkeypatch):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    monkeypatch.setattr(cpu_threads, "_cgroup_dirs", lambda: [tmp_path])
    monkeypatch.setattr(cpu_threads, "allowed_cpus", lambda: [0, 1, 2, 3])
    assert cpu_threads.cgroup_quota() == 1.5 and cpu_threads.available_cores() == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_threads.cgroup_quota() is None and cpu_threads.available_cores() == 4


def test_the_governor_moves_only_on_the_same_answer_twice(monkeypatch):
    p = ThreadPlan(threads=2, most=2, cores=2, others=0.0, passive=False, source="auto")
    readings = iter([2.0, 0.0, 2.0, 2.0, 0.0])
    monkeypatch.setattr(cpu_threads.DemandMeter, "others", lambda self: next(readings, 0.0))
    g = Governor(p, every_s=0.01)
    seen = []
    g.start()
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline and len(seen) < 2:
        if (new := g.advice()) is not None:
            seen.append(new)
            g.applied(new)
        time.sleep(0.001)
    g.close()
    assert seen == [1, 2]  # the lone 2.0 changed nothing; two in a row dropped to one thread, two 0.0 restored


def test_a_plan_below_its_cores_says_why_once():
    assert ThreadPlan(1, 2, 2, 2.3, False, "auto").describe() == "1 CPU thread of 2: other processes want 2.3 of 2 cores"
    assert ThreadPlan(2, 2, 2, 2.3, True, "auto").describe() == ""  # every core, passive: nothing to say
    assert ThreadPlan(2, 2, 2, None, False, "auto").describe() == ""


def test_the_note_says_when_the_machine_is_shared():
    assert busy_note({THREADS: 2, CPU_OTHERS: 0.1}, 2) == ""
    assert busy_note({THREADS: 1, CPU_OTHERS: 2.0}, 2) == "shared: 2.0 cores wanted by others of 2, 1 thread"
    assert busy_note({}, 2) == "" and busy_note({THREADS: 1, CPU_OTHERS: 3.0}, None) == ""


def test_the_headless_line_says_the_machine_is_shared(tmp_path):
    from cockpit.headless import fields
    from cockpit.history import RunHistory
    from runspec.run.rundir import RunDir

    rd = RunDir(tmp_path / "run")
    rd.path.mkdir()
    w = events.EventWriter(rd.events)
    w.emit(events.START, step=0, max_steps=100, cpu={"cores": 2, "threads": 2})
    w.emit(events.STEP, step=10, metrics={"train/loss": 2.5, "train/tokens_per_s": 900.0, THREADS: 1, CPU_OTHERS: 2.0})
    w.close()
    h = RunHistory(rd)
    h.poll()
    assert fields(h) == "loss 2.5000  900 tok/s  shared: 2.0 cores wanted by others of 2, 1 thread"


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2 or not os.path.exists("/proc/stat"), reason="needs 2 cores, Linux")
def test_a_run_drops_threads_when_cpu_bound_processes_arrive_and_says_so(write_config, runs_dir):
    """A real engine whose threads spin; CPU-bound processes (one per core) arrive; it drops to one
    thread (or, started on a machine already that busy, took one from the outset), logs why, and
    its step events say the machine is shared."""
    from cockpit.runs import create_run

    cores = len(os.sched_getaffinity(0))
    cfg = write_config("shared", {"train": {"max_steps": 100000, "checkpoint_every": 0}, "log": {"every": 5},
                                  "eval": {"every": 0}})
    rd = create_run(cfg, runs_dir=runs_dir)
    env = {**os.environ, "GOMP_SPINCOUNT": "300000"}  # spinning whatever the load at start, so dropping is the cure
    env.pop("OMP_NUM_THREADS", None)
    out = rd.path / "engine.out"
    proc = subprocess.Popen([sys.executable, "-m", "engine", "train", str(rd.path)], env=env,
                            stdout=out.open("w"), stderr=subprocess.STDOUT)
    hogs = []
    try:
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline and not any(e.kind == events.STEP for e in events.read_events(rd.events)):
            time.sleep(0.1)
        hogs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(cores)]
        shared = None
        while time.monotonic() < deadline and shared is None:
            time.sleep(0.2)
            shared = next((e for e in events.read_events(rd.events) if e.kind == events.STEP
                           and e.metrics.get(THREADS) == 1 and e.metrics.get(CPU_OTHERS, 0) >= cores - 0.5), None)
        assert shared is not None, "the run never dropped to one thread"
        assert busy_note(shared.metrics, cores).startswith("shared: ")
        start = next(e for e in events.read_events(rd.events) if e.kind == events.START)
        assert start.get("cpu")["cores"] == cores and start.get("cpu")["source"] == "auto"
        # the drop is logged; a start on a machine already this busy took one thread from the outset and says so
        said = out.read_text()
        assert f"1 CPU thread instead of {cores}: other processes want" in said or (
            start.get("cpu")["threads"] == 1 and f"1 CPU thread of {cores}: other processes want" in said), said
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        proc.terminate()
        proc.wait(timeout=PATIENCE)
