"""Frictions of the research workflow (issue 27's first part): an exact run name wins over a
prefix, queue headers count what they list, stages read as the phases a person counts, and a
run asking for more ranks than the machine has is refused in one line."""

from __future__ import annotations

import os

import pytest
from conftest import cockpit

from cockpit.runs import RunError, find_run
from cockpit.status import queue_counts
from runspec.config.plan import phase
from runspec.run.rundir import RunDir


def make(runs, *ids):
    for run_id in ids:
        rd = RunDir(runs / run_id)
        rd.path.mkdir(parents=True)
        rd.create_state("completed", max_steps=1)


def test_an_exact_name_wins_over_a_longer_name_it_prefixes(runs_dir):
    make(runs_dir, "lora-20261201-101500", "lora_grow-20261201-101600", "lora-grow-20261201-101700")
    assert find_run("lora", runs_dir).id == "lora-20261201-101500"
    assert find_run("lora_g", runs_dir).id == "lora_grow-20261201-101600"  # a unique prefix still works
    assert find_run("lora-20261201-101500", runs_dir).id == "lora-20261201-101500"


def test_an_ambiguity_names_each_candidate_with_its_state_and_age(runs_dir):
    make(runs_dir, "lora-20261201-101500", "lora-20261201-101500-2", "lora_grow-20261201-101600")
    with pytest.raises(RunError, match=r"'lora' matches 2 runs: lora-20261201-101500 \(completed, just now\), "
                                       r"lora-20261201-101500-2 \(completed, just now\); give more of the id"):
        find_run("lora", runs_dir)
    with pytest.raises(RunError, match="'lo' matches 3 runs"):
        find_run("lo", runs_dir)


def test_queue_headers_count_each_run_once():
    st = {"running": [{"id": "a"}, {"id": "b"}],
          "queue": [{"status": "running"}, {"status": "running"}] + [{"status": "queued"}] * 30}
    assert queue_counts(st) == "2 running, 30 queued"
    st["queue"].append({"status": "failed"})
    assert queue_counts(st) == "2 running, 30 queued, 1 other"


def test_stages_read_as_phases():
    assert phase(0, 1, 300) == "1/2" and phase(1, 1, 300) == "2/2"  # grown at 300: the run's own shape first
    assert phase(1, 1, 0) == "1/1" and phase(2, 2, 0) == "2/2"  # a LoRA from step 0 is the first phase
    assert phase(0, 0, None) == ""


@pytest.mark.slow
def test_more_ranks_than_cores_is_refused_before_anything_is_created(write_config, runs_dir):
    too_many = (os.cpu_count() or 1) + 1
    r = cockpit("--runs-dir", str(runs_dir), "--headless", "run", str(write_config("wide")), "--nproc", str(too_many),
                "--set", "train.device=cpu")
    assert r.returncode == 2 and f"--nproc {too_many}: this machine has" in r.stderr and "--force" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not list(runs_dir.iterdir())


def test_a_sweeps_runs_move_to_the_front_together_in_one_edit(write_config, runs_dir):
    from cockpit import control
    from cockpit.queue import Queue
    from runspec.run.rundir import RunMeta

    q = Queue(runs_dir)
    a, b = q.add([str(write_config("a")), str(write_config("b"))], tags=["night"])
    sweep = [rd for i in range(3) for rd in q.add([str(write_config(f"s{i}"))], meta=RunMeta(sweep="lad-20261201-1"))]
    chosen = control.select(q, [], sweep="lad")
    assert [rd.id for rd in chosen] == [rd.id for rd in sweep]
    control.stop(q, sweep[1].id)  # not queued any more: left where it is
    at, left = control.move_many(q, chosen, 1)
    assert at == 1 and left == [sweep[1].id]
    assert q.order == [sweep[0].id, sweep[2].id, a.id, b.id]
    assert [rd.id for rd in control.select(q, [b.id], tag="night")] == [a.id, b.id]  # each once, queue order
    with pytest.raises(RunError, match="--sweep zz: no such sweep"):
        control.select(q, [], sweep="zz")
    with pytest.raises(RunError, match="give runs, --sweep NAME or --tag TAG"):
        control.select(q, [])
