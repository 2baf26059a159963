"""The queue, the worker, GPU figures and keep-awake: real processes, real files."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import PATIENCE, ROOT, cockpit

from cockpit import control
from cockpit.gpu import GpuMonitor
from cockpit.keepawake import KeepAwake, Policy
from cockpit.queue import Queue
from cockpit.runs import RunError
from cockpit.worker import live_workers
from runspec.config.schema import ConfigError
from runspec.run import events
from runspec.run.rundir import RunDir


def ids(q: Queue) -> list[str]:
    return q.order


def test_queue_semantics(write_config, runs_dir):
    q = Queue(runs_dir)
    cfg = write_config("q")
    a, b = q.add([str(cfg), str(cfg)])
    (c,) = q.add([str(cfg)], name="urgent", front=True)
    (d,) = q.add([str(cfg)], name="after-a", after=a.id)
    assert ids(q) == [c.id, a.id, d.id, b.id]
    assert all(rd.read_state().status == "queued" for rd in (a, b, c, d))
    assert q.move(b.id, to=1) == 1 and ids(q) == [b.id, c.id, a.id, d.id]
    q.move(b.id, down=True)
    assert ids(q) == [c.id, b.id, a.id, d.id]
    q.move(d.id, up=True)
    assert ids(q) == [c.id, b.id, d.id, a.id]
    control.remove(q, c.id)
    assert not c.path.exists() and ids(q) == [b.id, d.id, a.id]
    control.stop(q, d.id)  # a queued run taken out
    assert d.read_state().status == "stopped" and ids(q) == [b.id, a.id]
    with pytest.raises(RunError, match="--force"):
        control.remove(q, d.id)  # not queued: its directory holds results
    control.retry(q, d.id)
    assert ids(q) == [b.id, a.id, d.id] and d.read_state().status == "queued"
    with pytest.raises(RunError, match="only failed, stopped, interrupted"):
        control.retry(q, a.id)
    q.set_paused(True)
    assert q.next_ready() is None and ids(q) == [b.id, a.id, d.id]
    q.set_paused(False)
    assert q.next_ready().id == b.id and ids(q) == [a.id, d.id]
    statuses = [h["status"] for h in d.read_state().history]
    assert statuses == ["queued", "stopped", "queued"] and all("time" in h for h in d.read_state().history)


@pytest.mark.slow
def test_a_bad_config_is_rejected_and_the_queue_is_unchanged(write_config, runs_dir):
    q = Queue(runs_dir)
    good = write_config("good")
    q.add([str(good)])
    before = (ids(q), sorted(p.name for p in runs_dir.iterdir()))
    bad = write_config("bad", {"model": {"n_embd": 64}})
    with pytest.raises(ConfigError, match=r"\[model\] n_embd: unknown key"):
        q.add([str(good), str(bad)])  # one bad file: nothing is queued
    assert (ids(q), sorted(p.name for p in runs_dir.iterdir())) == before
    r = cockpit("--runs-dir", str(runs_dir), "queue", "add", str(bad))
    assert r.returncode == 2 and "n_embd" in r.stderr and (ids(q), sorted(p.name for p in runs_dir.iterdir())) == before


@pytest.mark.slow
def test_two_processes_adding_100_runs_each_lose_nothing(write_config, runs_dir):
    cfg = write_config("many")
    code = ("import sys; from pathlib import Path; from cockpit.queue import Queue\n"
            "q = Queue(Path(sys.argv[1]))\n"
            "for _ in range(100): q.add([sys.argv[2]])\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(runs_dir), str(cfg)], cwd=ROOT) for _ in range(2)]
    assert [p.wait(timeout=PATIENCE) for p in procs] == [0, 0]
    order = Queue(runs_dir).order
    assert len(order) == 200 and len(set(order)) == 200
    assert sorted(order) == sorted(d.name for d in runs_dir.iterdir() if (d / "state.json").exists())


def long_run(write_config, name="long"):
    return write_config(name, {"train": {"max_steps": 300, "checkpoint_every": 20}, "log": {"every": 10},
                               "eval": {"every": 0}})


def start_worker(runs_dir, *extra, env: dict | None = None):
    return subprocess.Popen([sys.executable, "-m", "cockpit", "--runs-dir", str(runs_dir), "worker", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})


def wait_for(predicate, timeout=PATIENCE):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    raise AssertionError("timed out")


def checkpoints_written(rd: RunDir) -> list[int]:
    return [e.step for e in events.read_events(rd.events) if e.kind == events.CHECKPOINT]


@pytest.mark.slow
@pytest.mark.parametrize("engine_dies_too", [True, False], ids=["machine-crash", "worker-only"])
def test_sigkill_worker_mid_run_then_a_new_worker_finishes_it(write_config, runs_dir, engine_dies_too):
    q = Queue(runs_dir)
    # 600 steps: long enough that a loaded machine does not finish it while the worker dies
    (a,) = q.add([str(write_config("long", {"train": {"max_steps": 600, "checkpoint_every": 20}, "log": {"every": 10},
                                            "eval": {"every": 0}}))])
    (b,) = q.add([str(write_config("next"))])
    worker = start_worker(runs_dir)
    wait_for(lambda: len(checkpoints_written(a)) >= 2)
    status = cockpit("--runs-dir", str(runs_dir), "status").stdout
    assert "worker     alive" in status and f"running    {a.id}  2L×32  step" in status
    engine_pid = a.read_state().pid
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    if engine_dies_too:  # a machine crash takes the engine as well
        os.kill(engine_pid, signal.SIGKILL)
        wait_for(lambda: not os.path.exists(f"/proc/{engine_pid}") or
                 open(f"/proc/{engine_pid}/stat").read().split()[2] == "Z")
        killed_at = a.checkpoint_steps()[-1]  # the newest on disk: a checkpoint saved but not yet logged counts
    assert q.order == [b.id]  # no queue entry lost
    second = start_worker(runs_dir, "--once")
    out, _ = second.communicate(timeout=PATIENCE)
    assert second.returncode == 0, out
    state = a.read_state()
    assert state.status == "completed" and state.step == 600
    assert b.read_state().status == "completed" and q.order == []
    if engine_dies_too:
        assert "interrupted" in [h["status"] for h in state.history] and "resumes from step" in out
        starts = [e for e in events.read_events(a.events) if e.kind == events.START]
        assert starts[-1].get("resumed_from") == killed_at  # at most one checkpoint interval lost
        assert out.index(f"started {a.id}") < out.index(f"started {b.id}")  # ahead of the queue
    else:
        assert "interrupted" not in [h["status"] for h in state.history]
        # adopted while its engine ran on; should the orphaned engine still finish before the new
        # worker looks, it must have finished before that worker started the next run
        a_end = next(e for e in events.read_events(a.events) if e.kind == events.FINAL)
        b_start = next(e for e in events.read_events(b.events) if e.kind == events.START)
        assert f"adopted {a.id}" in out or a_end.time < b_start.time, out


@pytest.mark.slow
def test_a_second_worker_for_the_same_device_says_so(runs_dir):
    first = start_worker(runs_dir)
    wait_for(lambda: bool(live_workers(runs_dir)))
    r = cockpit("--runs-dir", str(runs_dir), "worker", "--once")
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=PATIENCE)
    assert r.returncode == 2 and "another worker" in r.stderr and "owns the CPU" in r.stderr


@pytest.mark.slow
def test_a_runs_directory_two_machines_share_has_one_worker_and_neither_takes_the_others_run(write_config, runs_dir):
    alpha, beta = {"COCKPIT_HOST": "alpha"}, {"COCKPIT_HOST": "beta"}  # two machines over one (NFS) directory
    q = Queue(runs_dir)
    (a,) = q.add([str(write_config("long", {"train": {"max_steps": 10**6, "checkpoint_every": 20},
                                              "log": {"every": 10}, "eval": {"every": 0}}))])  # until stopped
    worker = start_worker(runs_dir, env=alpha)
    try:
        wait_for(lambda: len(checkpoints_written(a)) >= 1)
        assert a.read_state().host == "alpha"
        r = cockpit("--runs-dir", str(runs_dir), "worker", "--once", env=beta)
        assert r.returncode == 2 and "a worker on alpha" in r.stderr and "one worker per runs directory" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        st = cockpit("--runs-dir", str(runs_dir), "--headless", "status", env=beta)
        assert f"pid {worker.pid} on alpha" in st.stdout 
        (line,) = [x for x in st.stdout.splitlines() if x.startswith("running")]
        assert a.id in line and line.endswith("on alpha"), line
        for verb in ("stop", "retry"):
            r = cockpit("--runs-dir", str(runs_dir), "queue", verb, a.id, env=beta)
            assert r.returncode == 2 and "alpha" in r.stderr and "there" in r.stderr, (verb, r.stderr)
        assert not a.read_state().stop_requested
        worker.send_signal(signal.SIGTERM)  # alpha's worker leaves; its engine trains on
        out, _ = worker.communicate(timeout=PATIENCE)
        assert "still training on their own" in out
        # beta's worker may start now; alpha's run is not its to mark interrupted or adopt
        r = cockpit("--runs-dir", str(runs_dir), "worker", "--once", env=beta)
        assert r.returncode == 0 and "adopted" not in r.stdout, r.stdout + r.stderr
        state = a.read_state()
        assert state.status == "running" and "interrupted" not in [h["status"] for h in state.history]
        r = cockpit("--runs-dir", str(runs_dir), "queue", "stop", a.id, env=alpha)  # on its own machine
        assert r.returncode == 0 and "asked" in r.stdout, r.stderr
        wait_for(lambda: a.read_state().status == "stopped")
    finally:
        worker.kill()
        worker.wait()
        engine = a.read_state().engine()
        if engine is not None and engine.alive():
            os.kill(engine.pid, signal.SIGKILL)


@pytest.mark.slow
def test_stop_and_retry_through_a_live_worker(write_config, runs_dir):
    q = Queue(runs_dir)
    # long enough that no loaded machine finishes it before the stop arrives; stopped twice
    endless = write_config("endless", {"train": {"max_steps": 1_000_000, "checkpoint_every": 20}, "log": {"every": 10},
                                       "eval": {"every": 0}})
    (a,) = q.add([str(endless)])
    worker = start_worker(runs_dir)
    try:
        wait_for(lambda: len(checkpoints_written(a)) >= 1)
        r = cockpit("--runs-dir", str(runs_dir), "queue", "stop", a.id)
        assert r.returncode == 0 and "asked" in r.stdout
        wait_for(lambda: a.read_state().status == "stopped")
        stopped_at = a.read_state().step
        assert a.checkpoint_steps()[-1] == stopped_at
        assert cockpit("--runs-dir", str(runs_dir), "queue", "retry", a.id).returncode == 0
        wait_for(lambda: len([e for e in events.read_events(a.events) if e.kind == events.START]) == 2
                 and a.read_state().status == "running")
        starts = [e for e in events.read_events(a.events) if e.kind == events.START]
        assert starts[-1].get("resumed_from") == stopped_at
        assert cockpit("--runs-dir", str(runs_dir), "queue", "stop", a.id).returncode == 0
        wait_for(lambda: a.read_state().status == "stopped")
        assert a.read_state().step > stopped_at
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=PATIENCE)


def test_keepawake_policy_threshold_grace_and_fallback():
    p = Policy(threshold=10, grace=60)
    assert p.wants_awake([5.0, 3.0], run_running=True, now=0) is False  # GPUs idle: a run alone is not enough
    assert p.wants_awake([5.0, 55.0], run_running=False, now=10) is True  # any GPU above the threshold
    assert p.wants_awake([0.0], run_running=False, now=50) is True  # within the grace period
    assert p.wants_awake([0.0], run_running=False, now=71) is False  # grace over: sleep allowed
    assert p.wants_awake([10.0], run_running=False, now=72) is False  # at the threshold is not above
    nvml_less = Policy(threshold=10, grace=30)
    assert nvml_less.wants_awake(None, run_running=True, now=0) is True  # no NVML: a running run counts
    assert nvml_less.wants_awake(None, run_running=False, now=20) is True
    assert nvml_less.wants_awake(None, run_running=False, now=31) is False


@pytest.mark.slow
def test_real_keepawake_call_reports_its_state_without_crashing():
    ka = KeepAwake(threshold=10, grace=0)
    try:
        state = ka.update([80.0], run_running=True)
        assert state["state"] in ("active", "unavailable")
        if state["state"] == "unavailable":  # e.g. no session D-Bus in a container
            assert state["reason"] and "wakepy" in state["reason"]
        else:
            assert state["method"]
        assert ka.update([0.0], run_running=False, now=state["since"] + 1)["state"] == "idle"
    finally:
        ka.close()


def test_gpu_monitor_without_nvidia_reports_instead_of_failing():
    snap = GpuMonitor().snapshot()
    assert isinstance(snap["gpus"], list)
    if not snap["available"]:
        assert snap["error"].startswith("NVML")


# -- damage and faults -------------------------------------------------------------------------

@pytest.mark.slow
def test_a_damaged_queue_json_is_recovered_from_its_backup_and_reported(write_config, runs_dir):
    """Before: it read as an empty queue and the next worker wrote it back empty, orphaning
    every queued run."""
    q = Queue(runs_dir)
    a, b, c = q.add([str(write_config("q"))] * 3)
    q.move(c.id, to=1)  # the backup now holds the order before this move
    (runs_dir / ".cockpit" / "queue.json").write_text('{"order": ["' + c.id[:5])  # truncated
    r = cockpit("--runs-dir", str(runs_dir), "queue", "ls")
    assert r.returncode == 0 and "queue.json was damaged" in r.stderr and "recovered 3 queued run(s)" in r.stderr
    assert Queue(runs_dir).order == [a.id, b.id, c.id]  # the backup's order: one edit behind, nothing lost
    kept = list((runs_dir / ".cockpit").glob("queue.json.damaged-*"))
    assert len(kept) == 1 and kept[0].read_text().startswith('{"order"')
    r = cockpit("--runs-dir", str(runs_dir), "queue", "ls")
    assert "damaged" not in r.stderr  # said once, when it was recovered
    assert cockpit("--runs-dir", str(runs_dir), "queue", "mv", c.id, "--to", "1").returncode == 0


def test_without_a_backup_the_queue_is_rebuilt_from_the_queued_runs(write_config, runs_dir):
    q = Queue(runs_dir)
    a, b = q.add([str(write_config("q"))] * 2)
    d = runs_dir / ".cockpit"
    (d / "queue.json").write_bytes(b"\x00\xff garbage")
    (d / "queue.json.bak").unlink(missing_ok=True)  # (a first edit has nothing to back up)
    lines = []
    assert Queue(runs_dir, warn=lines.append).order == [a.id, b.id]
    assert len(lines) == 1 and "rebuilt the queue from 2 run(s) in state queued" in lines[0]
    assert "not paused" in lines[0]


def test_a_paused_queue_rebuilt_without_a_backup_stays_paused(write_config, runs_dir):
    """Before: it came back unpaused, and the next worker started the runs held back."""
    q = Queue(runs_dir)
    a, b = q.add([str(write_config("q"))] * 2)
    q.set_paused(True)
    d = runs_dir / ".cockpit"
    (d / "queue.json").write_text("{")
    (d / "queue.json.bak").unlink()
    lines = []
    rebuilt = Queue(runs_dir, warn=lines.append)
    assert rebuilt.paused and rebuilt.order == [a.id, b.id]
    assert "it stays paused, as it was" in lines[0]
    rebuilt.set_paused(False)
    (d / "queue.json").write_text("{")
    (d / "queue.json.bak").unlink()
    assert not Queue(runs_dir).paused  # resumed is remembered as well


@pytest.mark.slow
def test_a_worker_never_empties_a_damaged_queue(write_config, runs_dir):
    q = Queue(runs_dir)
    q.set_paused(True)  # the worker reads the queue but starts nothing
    runs = q.add([str(write_config("q"))] * 2)
    (runs_dir / ".cockpit" / "queue.json").write_text("{")
    r = cockpit("--runs-dir", str(runs_dir), "worker", "--once")
    assert r.returncode == 0 and "warning:" in r.stdout and "queue.json was damaged" in r.stdout
    assert Queue(runs_dir).order == [rd.id for rd in runs]
    assert cockpit("--runs-dir", str(runs_dir), "queue", "retry", runs[0].id).returncode == 2  # queued: no retry


@pytest.mark.slow
def test_queue_add_after_a_run_that_is_not_queued_creates_nothing(write_config, runs_dir):
    """Before: the run directories were created, then the add failed: they stayed queued
    without being in the queue, and never ran."""
    q = Queue(runs_dir)
    (a,) = q.add([str(write_config("q"))])
    control.stop(q, a.id)
    before = sorted(p.name for p in runs_dir.iterdir())
    r = cockpit("--runs-dir", str(runs_dir), "queue", "add", str(write_config("n")), "--after", a.id)
    assert r.returncode == 2 and "is not queued" in r.stderr
    assert sorted(p.name for p in runs_dir.iterdir()) == before and q.order == []


@pytest.mark.slow
def test_killing_the_engine_under_a_live_worker_marks_it_interrupted_and_resumes_it(write_config, runs_dir):
    """Before: it was marked failed with the last log line as the reason, and never resumed."""
    q = Queue(runs_dir)
    (a,) = q.add([str(long_run(write_config))])
    worker = start_worker(runs_dir, "--once")
    wait_for(lambda: len(checkpoints_written(a)) >= 2)
    os.kill(a.read_state().pid, signal.SIGKILL)
    out, _ = worker.communicate(timeout=PATIENCE)
    assert worker.returncode == 0, out
    state = a.read_state()
    assert state.status == "completed" and state.step == 300
    interrupted = [h for h in state.history if h["status"] == "interrupted"]
    assert len(interrupted) == 1
    reason = interrupted[0]["reason"]
    assert reason.startswith("engine killed by signal 9 (SIGKILL) at step") and "; last log line:" in reason
    assert "resumes from step" in out


def test_an_interrupted_run_that_makes_no_progress_is_not_restarted_forever():
    from cockpit.worker import should_resume
    from runspec.run.rundir import RunState

    def state(*steps):
        return RunState(status="interrupted", history=[{"status": "interrupted", "step": s} for s in steps])

    assert should_resume(state(20)) and should_resume(state(20, 40))
    assert not should_resume(state(20, 40, 40))  # died twice at the same checkpoint: a person decides


@pytest.mark.slow
def test_a_run_whose_dependency_failed_fails_too_and_worker_once_exits(write_config, runs_dir):
    """Before: the dependent run waited for ever, and so did `worker --once` (which `cockpit run`
    starts), e.g. a fine-tune queued with [init] from a run that diverged."""
    q = Queue(runs_dir)
    bad = write_config("nan", {"train": {"max_steps": 50}, "optim": {"lr": 1e6, "warmup_steps": 0,
                                                                      "schedule": "constant"},
                               "log": {"every": 50}, "eval": {"every": 0}})
    (parent,) = q.add([str(bad)])
    (child,) = q.add([str(write_config("child", {"init": {"from": parent.id}}))])
    assert child.read_meta().depends_on == [parent.id]
    r = cockpit("--runs-dir", str(runs_dir), "worker", "--once")
    assert r.returncode == 0, r.stderr
    assert parent.read_state().status == "failed"
    state = child.read_state()
    assert state.status == "failed"
    assert state.reason == f"it depends on {parent.id}, which failed; retry that run, then this one (cockpit queue retry)"
    assert Queue(runs_dir).order == []


@pytest.mark.slow
def test_worker_once_exits_when_what_is_left_waits_on_a_stopped_run(write_config, runs_dir):
    q = Queue(runs_dir)
    (parent,) = q.add([str(write_config("p"))])
    (child,) = q.add([str(write_config("c"))], depends_on=[parent.id])
    parent.transition("stop", expected="queued", reason="stopped by the user")
    r = cockpit("--runs-dir", str(runs_dir), "worker", "--once")
    assert r.returncode == 0 and "wait on stopped runs" in r.stdout + r.stderr
    assert child.read_state().status == "queued"  # it starts once the parent is resumed and completes


@pytest.mark.slow
def test_a_worker_with_two_slots_trains_two_runs_at_once_on_split_cores(write_config, runs_dir):
    """--slots 2 on the CPU: the first two runs overlap, the third waits for a free slot, and
    each run gets its share of the cores (not every core each: oversubscribed, both slow down)."""
    import os

    from runspec.run import events

    q = Queue(runs_dir)
    cfg = write_config("slot", {"train": {"max_steps": 40, "checkpoint_every": 0}, "eval": {"every": 0}})
    big = write_config("whole", {"train": {"max_steps": 10, "checkpoint_every": 0, "slots": 2}, "eval": {"every": 0}})
    runs = q.add([str(cfg)] * 3) + q.add([str(big)])
    r = cockpit("--runs-dir", str(runs_dir), "worker", "--once", "--slots", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    spans = []
    for rd in runs:
        history = rd.read_state().history
        began = next(h["time"] for h in history if h["status"] == "running")
        ended = next(h["time"] for h in history if h["status"] == "completed")
        spans.append((began, ended))
    (a0, a1), (b0, b1), (c0, c1), (d0, d1) = spans
    assert b0 < a1 and a0 < b1  # the first two ran side by side
    assert c0 >= min(a1, b1)  # the third took the first slot that came free
    assert d0 >= max(a1, b1, c1) or d1 <= min(a0, b0)  # [train] slots = 2: the CPU alone
    threads = [next(e.get("threads") for e in events.read_events(rd.events) if e.kind == events.START) for rd in runs]
    cores = os.cpu_count() or 1
    assert threads[:3] == [max(1, cores // 2)] * 3 and threads[3] == cores
    assert "(slot 2/2)" in r.stdout


@pytest.mark.slow
def test_notify_runs_the_hook_on_failure_completion_and_drain(write_config, runs_dir, tmp_path):
    import time

    from conftest import PATIENCE

    log = tmp_path / "notified.txt"
    settings = tmp_path / "config.toml"
    settings.write_text('[notify]\ncommand = "echo $COCKPIT_EVENT $COCKPIT_RUN $COCKPIT_STATUS >> ' + str(log) + '"\n')
    short = tmp_path / "short.txt"
    short.write_text("a short corpus" * 4)  # the engine refuses it: shorter than one context
    q = Queue(runs_dir)
    (good,) = q.add([str(write_config("good", {"train": {"max_steps": 4}}))])
    (bad,) = q.add([str(write_config("bad", {"data": {"path": str(short)}, "model": {"block_size": 64}}))])
    r = cockpit("--runs-dir", str(runs_dir), "worker", "--once", env={"COCKPIT_CONFIG": str(settings)})
    assert r.returncode == 0 and "the queue is drained" in r.stdout, r.stdout
    end = time.monotonic() + PATIENCE
    while time.monotonic() < end and (not log.exists() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.05)  # the hook runs in the background
    assert sorted(log.read_text().splitlines()) == sorted([f"completed {good.id} completed", f"failed {bad.id} failed",
                                                           "drained"])
    settings.write_text("[notify]\nwhen = 1\n")
    r = cockpit("--runs-dir", str(runs_dir), "worker", "--once", env={"COCKPIT_CONFIG": str(settings)})
    assert r.returncode == 2 and "[notify] unknown key(s) ['when']" in r.stderr and str(settings) in r.stderr


@pytest.mark.slow
def test_queue_pause_of_a_sweep_or_tag_holds_those_runs_in_place(write_config, runs_dir):
    q = Queue(runs_dir)
    cfg = str(write_config("h", {"train": {"max_steps": 3}, "eval": {"every": 0, "final": False}}))
    a, b = q.add([cfg, cfg], tags=["later"])
    (c,) = q.add([cfg])
    r = cockpit("--runs-dir", str(runs_dir), "queue", "pause", "--tag", "later")
    assert r.returncode == 0 and "held 2 queued run(s) in place" in r.stdout, r.stderr
    ls = cockpit("--runs-dir", str(runs_dir), "queue", "ls").stdout
    assert f"{a.id}" in ls and ls.count("(held)") == 2 and not Queue(runs_dir).paused
    r = cockpit("--runs-dir", str(runs_dir), "worker", "--once")
    assert r.returncode == 0 and "are held" in r.stdout, r.stdout
    assert c.read_state().status == "completed" and a.read_state().status == b.read_state().status == "queued"
    assert Queue(runs_dir).order == [a.id, b.id]  # held in place, in order
    r = cockpit("--runs-dir", str(runs_dir), "queue", "resume", a.id, b.id)
    assert r.returncode == 0 and "let 2 held run(s) go" in r.stdout
    assert cockpit("--runs-dir", str(runs_dir), "worker", "--once").returncode == 0
    assert a.read_state().status == b.read_state().status == "completed" and Queue(runs_dir).held == []
