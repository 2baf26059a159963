"""One owner for a run's state: compare-and-set under the run's lock, and the races it closes,
each run with both sides in separate processes at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import PATIENCE, ROOT, cockpit

from cockpit import control
from cockpit.queue import Queue
from cockpit.runs import RunError, claim, engine_alive, read_states
from runspec.run.process import Proc, start_token
from runspec.run.rundir import RUNNING, RunDir, StateConflict, StateDamaged


def queued_runs(write_config, runs_dir, n: int) -> list[RunDir]:
    q = Queue(runs_dir)
    return q.add([str(write_config("r"))] * n)


def test_a_transition_from_an_unexpected_state_is_refused_with_a_clear_message(write_config, runs_dir):
    (rd,) = queued_runs(write_config, runs_dir, 1)
    rd.transition("stop", expected="queued", reason="by hand")
    with pytest.raises(StateConflict, match=r"is stopped, not queued: it changed meanwhile"):
        rd.transition("claim", expected="queued")
    assert rd.read_state().status == "stopped"
    assert [h["status"] for h in rd.read_state().history] == ["queued", "stopped"]


def race(*scripts: str, timeout: int = PATIENCE) -> list[dict]:
    """Run Python snippets in separate processes that start together (a barrier file), each
    printing one JSON object; return those objects."""
    go = ROOT / ".pytest_cache" / f"go-{os.getpid()}-{time.monotonic_ns()}"
    go.parent.mkdir(exist_ok=True)
    wait = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.001)\n"
    procs = [subprocess.Popen([sys.executable, "-c", wait + s], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
             for s in scripts]
    time.sleep(0.5)
    go.touch()
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        go.unlink(missing_ok=True)
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    return [json.loads(out) for out, _ in outs]


@pytest.mark.slow
def test_claims_racing_for_the_same_runs_have_exactly_one_winner(write_config, runs_dir):
    runs = queued_runs(write_config, runs_dir, 30)
    script = f"""
import json
from pathlib import Path
from cockpit.runs import claim
from runspec.run.process import Proc
from runspec.run.rundir import RunDir, StateConflict
won = []
for run_id in {[rd.id for rd in runs]!r}:
    try:
        claim(RunDir(Path({str(runs_dir)!r}) / run_id), Proc.me("worker"), expected="queued")
        won.append(run_id)
    except StateConflict:
        pass
print(json.dumps({{"won": won}}))
"""
    results = race(script, script, script)
    winners = [r for res in results for r in res["won"]]
    assert sorted(winners) == sorted(rd.id for rd in runs)  # each run claimed once, by one process
    for rd in runs:
        assert [h["status"] for h in rd.read_state().history] == ["queued", "running"]


@pytest.mark.slow
def test_queue_stop_racing_a_worker_start_never_reports_a_stop_that_did_not_happen(write_config, runs_dir):
    """Before: stop said 'taken out of the queue' while the worker started the run anyway."""
    runs = queued_runs(write_config, runs_dir, 25)
    start = f"""
import json
from pathlib import Path
from cockpit.queue import Queue
from cockpit.runs import claim
from runspec.run.process import Proc
from runspec.run.rundir import StateConflict
q = Queue(Path({str(runs_dir)!r}))
started = []
while True:
    rd = q.next_ready()
    if rd is None:
        break
    try:
        claim(rd, Proc.me("worker"), expected="queued")  # what the worker does before spawning
        started.append(rd.id)
    except StateConflict:
        pass
print(json.dumps({{"started": started}}))
"""
    stop = f"""
import json
from pathlib import Path
from cockpit import control
from cockpit.queue import Queue
q = Queue(Path({str(runs_dir)!r}))
said = {{}}
for run_id in {[rd.id for rd in runs]!r}:
    said[run_id] = control.stop(q, run_id)
print(json.dumps({{"said": said}}))
"""
    started, stopped = race(start, stop)
    started = set(started["started"])
    for rd in runs:
        state = rd.read_state()
        said = stopped["said"][rd.id]
        statuses = [h["status"] for h in state.history]
        if "taken out of the queue" in said:
            assert rd.id not in started and statuses == ["queued", "stopped"]
        else:  # the start won: the stop was recorded for the engine to read, never lost
            assert rd.id in started and statuses == ["queued", "running"]
            assert state.stop_requested and "will stop before training" in said
    assert Queue(runs_dir).order == []


@pytest.mark.slow
def test_queue_rm_racing_a_worker_start_never_deletes_a_starting_run(write_config, runs_dir):
    """Before: rm checked 'running with a live pid', and a run being started has no pid yet."""
    runs = queued_runs(write_config, runs_dir, 25)
    start = f"""
import json
from pathlib import Path
from cockpit.queue import Queue
from cockpit.runs import claim
from runspec.run.process import Proc
from runspec.run.rundir import StateError
q = Queue(Path({str(runs_dir)!r}))
started = []
while True:
    rd = q.next_ready()
    if rd is None:
        break
    try:
        claim(rd, Proc.me("worker"), expected="queued")
        started.append(rd.id)
    except StateError:  # removed meanwhile: the directory is gone
        pass
print(json.dumps({{"started": started}}))
"""
    remove = f"""
import json
from pathlib import Path
from cockpit.queue import Queue
from cockpit.runs import RunError
from cockpit import control
q = Queue(Path({str(runs_dir)!r}))
removed, refused = [], []
for run_id in {[rd.id for rd in runs]!r}:
    try:
        control.remove(q, run_id)
        removed.append(run_id)
    except RunError as e:
        refused.append([run_id, str(e)])
print(json.dumps({{"removed": removed, "refused": refused}}))
"""
    started, rm = race(start, remove)
    started, removed = set(started["started"]), set(rm["removed"])
    assert started.isdisjoint(removed) and started | removed == {rd.id for rd in runs}
    for rd in runs:
        if rd.id in removed:
            assert not rd.path.exists()
        else:
            assert rd.read_state().status == RUNNING
    for run_id, message in rm["refused"]:
        assert run_id in started and "is running; stop it first" in message


@pytest.mark.slow
def test_damaged_state_json_is_a_one_line_reason_not_a_crash(write_config, runs_dir):
    a, b = queued_runs(write_config, runs_dir, 2)
    a.state_file.write_text('{"status": "runn')  # truncated mid-write by hand
    listed = read_states(runs_dir)
    assert listed[a.id].state is None and "state.json is damaged" in listed[a.id].problem
    assert listed[b.id].status == "queued"
    with pytest.raises(StateDamaged):
        a.transition("claim", expected="queued")
    for args in (["status"], ["queue", "ls"], ["status", "--json"]):
        r = cockpit("--runs-dir", str(runs_dir), *args)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    r = cockpit("--runs-dir", str(runs_dir), "status")
    assert a.id in r.stdout and "damaged" in r.stdout
    r = cockpit("--runs-dir", str(runs_dir), "--headless", "resume", a.id)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "state.json is damaged" in r.stderr
    r = cockpit("--runs-dir", str(runs_dir), "queue", "retry", a.id)
    assert r.returncode == 2 and "damaged" in r.stderr


def test_a_finished_run_with_a_damaged_state_is_listed_as_damaged_not_dropped(write_config, runs_dir):
    """Before: it sorted as the oldest run and fell out of status's five recent ones."""
    runs = queued_runs(write_config, runs_dir, 7)
    q = Queue(runs_dir)
    for rd in runs:
        control.stop(q, rd.id)  # seven finished runs, none in the queue
    runs[3].state_file.write_text('{"status": "stop')
    from cockpit.status import collect, render

    st = collect(runs_dir)
    assert len(st["recent"]) == 5 and runs[3].id not in [r["id"] for r in st["recent"]]
    assert st["damaged"] == [{"id": runs[3].id, "reason": st["damaged"][0]["reason"]}]
    assert f"damaged    {runs[3].id}: " in render(st) and "state.json is damaged" in render(st)


@pytest.mark.slow
def test_signals_never_reach_a_process_that_reused_a_dead_engines_pid(write_config, runs_dir):
    """Before: stop/rm/resume checked only that the pid was alive, and killed a stranger."""
    (rd,) = queued_runs(write_config, runs_dir, 1)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        # the run's engine died; its pid now names an unrelated process (same pid, other start time)
        rd.transition("claim", expected="queued", pid=stranger.pid, pid_start="0:12345",
                      owner=Proc(999999, "gone", "worker").to_dict())
        state = rd.read_state()
        assert not engine_alive(rd, state)
        r = cockpit("--runs-dir", str(runs_dir), "queue", "stop", rd.id)
        assert r.returncode == 2 and "engine (pid" in r.stderr and "is gone" in r.stderr
        r = cockpit("--runs-dir", str(runs_dir), "queue", "rm", rd.id)
        assert r.returncode == 2 and "engine is gone" in r.stderr
        assert stranger.poll() is None  # alive and untouched
        r = cockpit("--runs-dir", str(runs_dir), "status")
        assert "ENGINE GONE" in r.stdout and "ETA" not in r.stdout.split("ENGINE GONE")[0].splitlines()[-1]
        r = cockpit("--runs-dir", str(runs_dir), "--headless", "resume", rd.id, "--max-steps", "3")
        assert r.returncode == 0, r.stderr  # the stale record is taken over, the stranger left alone
        assert stranger.poll() is None
        assert rd.read_state().status == "completed"
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.slow
def test_retry_of_a_run_whose_engine_and_worker_died_queues_it_again(write_config, runs_dir):
    (rd,) = queued_runs(write_config, runs_dir, 1)
    rd.transition("claim", expected="queued", pid=999999, pid_start="0:1", owner=Proc(999998, "x", "worker").to_dict())
    r = cockpit("--runs-dir", str(runs_dir), "queue", "retry", rd.id)
    assert r.returncode == 0, r.stderr
    assert [h["status"] for h in rd.read_state().history] == ["queued", "running", "interrupted", "queued"]
    assert Queue(runs_dir).order == [rd.id]


@pytest.mark.slow
def test_process_identity_is_pid_and_start_time():
    me = Proc.me("test")
    assert me.alive() and start_token(os.getpid()) == me.start
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert start_token(child.pid) is None  # gone (and reaped)
    assert not Proc(os.getpid(), "0:1", "fake").alive()  # same pid, another start: someone else


@pytest.mark.slow
def test_run_json_records_what_a_run_is_as_data(write_config, runs_dir):
    q = Queue(runs_dir)
    (parent,) = q.add([str(write_config("p"))])
    (rd,) = q.add([str(write_config("c"))], overrides=["train.max_steps=7", "model.pos=rope"], tags=["ablation", "x"],
                  depends_on=[parent.id])
    meta = json.loads(rd.meta_file.read_text())
    assert meta["overrides"] == {"train.max_steps": 7, "model.pos": "rope"}  # typed, not comments
    assert meta["tags"] == ["ablation", "x"] and meta["depends_on"] == [parent.id]
    assert meta["config_source"].endswith("c.toml") and meta["created"] > 0
    assert {"sweep", "sweep_values", "parent", "parent_step", "gpus"} <= set(meta)
    # the dependency holds the run back until its parent completed
    assert q.next_ready().id == parent.id
    assert q.next_ready() is None and q.order == [rd.id]
    r = cockpit("--runs-dir", str(runs_dir), "queue", "ls")
    assert f"waiting for {parent.id}" in r.stdout
    parent.transition("claim", expected="queued")
    parent.transition("complete")
    assert q.next_ready().id == rd.id


@pytest.mark.slow
def test_worker_start_after_a_stop_request_stops_before_training(write_config, runs_dir):
    """A stop that lands between the claim and the engine's start is read by the engine."""
    (rd,) = queued_runs(write_config, runs_dir, 1)
    from cockpit.runs import start_engine

    launch = claim(rd, Proc.me("cli"), expected="queued")
    r = cockpit("--runs-dir", str(runs_dir), "queue", "stop", rd.id)
    assert r.returncode == 0 and "will stop before training" in r.stdout
    proc = start_engine(rd, launch)
    assert proc.wait(timeout=PATIENCE) == 0
    state = rd.read_state()
    assert state.status == "stopped" and "before training started" in state.reason
    assert not rd.checkpoints.exists()


@pytest.mark.slow
def test_two_workers_on_two_gpus_never_take_each_others_runs(write_config, runs_dir):
    """Before: the second worker adopted the first's engine into its own slot, and one worker
    exiting made the runs directory look workerless."""
    from cockpit.worker import live_workers

    q = Queue(runs_dir)
    (a,) = q.add([str(write_config("long", {"train": {"max_steps": 100000, "checkpoint_every": 0},
                                             "eval": {"every": 0}, "log": {"every": 5}}))])
    env = {**os.environ, "COCKPIT_FAKE_GPUS": "2"}

    def worker(gpu: str, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "cockpit", "--runs-dir", str(runs_dir), "worker", "--gpus",
                                 gpu, *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    def until(predicate, timeout=PATIENCE):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.1)

    w0 = worker("0")
    until(lambda: a.read_state().status == RUNNING and engine_alive(a, a.read_state()))
    assert a.read_state().slot == "0"
    w1 = worker("1")
    until(lambda: len(live_workers(runs_dir)) == 2)
    r = cockpit("--runs-dir", str(runs_dir), "status")
    assert str(w0.pid) in r.stdout and str(w1.pid) in r.stdout and f"GPU 0: {a.id}" in r.stdout
    w0.kill()  # the worker dies; its engine trains on in its own session
    w0.wait()
    killed = time.time()
    engine = a.read_state().pid
    # w1 looks for orphans every few seconds: wait for a look after the death, then check it took nothing
    until(lambda: any(w["pid"] == w1.pid and w["recovered"] > killed for w in live_workers(runs_dir)))
    assert a.read_state().owner["pid"] == w0.pid and engine_alive(a, a.read_state())
    assert [w["pid"] for w in live_workers(runs_dir)] == [w1.pid]  # w0's death hides nothing of w1's
    w2 = worker("0")  # a new worker for GPU 0 takes its predecessor's engine
    until(lambda: a.read_state().owner["pid"] == w2.pid)
    assert a.read_state().pid == engine
    assert cockpit("--runs-dir", str(runs_dir), "queue", "stop", a.id).returncode == 0
    until(lambda: a.read_state().status == "stopped")
    for w in (w1, w2):
        w.send_signal(signal.SIGTERM)
        out, _ = w.communicate(timeout=PATIENCE)
        assert "adopted" not in out or w is w2
    assert live_workers(runs_dir) == []


@pytest.mark.slow
def test_queue_stop_and_rm_refuse_cleanly_without_a_run(runs_dir):
    for args in (["queue", "stop", "nope"], ["queue", "rm", "nope"]):
        r = cockpit("--runs-dir", str(runs_dir), *args)
        assert r.returncode == 2 and "no run 'nope'" in r.stderr
    with pytest.raises(RunError):
        control.stop(Queue(runs_dir), "nope")
