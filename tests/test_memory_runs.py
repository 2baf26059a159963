"""Memory and hourglass runs end to end, in real engine subprocesses: streams in order, an exact
resume with the memory in the checkpoint, the three evaluations of one run, and completion that
keeps the memory over a prompt longer than the context."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import PATIENCE, cockpit

from cockpit.runs import create_run, prepare_resume
from runspec.run import events
from runspec.run.rundir import RunDir

XL = {"model": {"pos": "rope", "memory": {"kind": "xl", "mem_len": 32, "eval_mem_len": 64}},
      "train": {"max_steps": 12, "checkpoint_every": 0}, "log": {"every": 1},
      "eval": {"every": 0, "stride": 8, "final_max_batches": 6}}


def engine_train(rd: RunDir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "train", str(rd.path)], capture_output=True, text=True,
                          timeout=PATIENCE)


def steps(rd: RunDir) -> dict[int, float]:
    return {e.step: e.metrics["train/loss"] for e in events.read_events(rd.events) if e.kind == events.STEP}


def finals(rd: RunDir) -> dict[str, float]:
    return next(e for e in events.read_events(rd.events) if e.kind == events.FINAL).metrics


@pytest.mark.slow
def test_an_xl_run_resumes_exactly_with_its_memory_and_scores_the_split_three_ways(write_config, runs_dir):
    straight = create_run(write_config("straight", XL), runs_dir=runs_dir)
    assert engine_train(straight).returncode == 0
    split = create_run(write_config("split", {**XL, "train": {"max_steps": 6, "checkpoint_every": 0},
                                              "optim": {"decay_steps": 12}}), runs_dir=runs_dir)
    assert engine_train(split).returncode == 0
    prepare_resume(split, max_steps=12, max_time=None)
    assert engine_train(split).returncode == 0
    a, b = steps(straight), steps(split)
    assert sorted(a) == sorted(b) == list(range(1, 13))
    assert [a[s] for s in range(1, 13)] == [b[s] for s in range(1, 13)]  # the streams and memories went on exactly
    f = finals(straight)
    for name in ("final_benchmarks/loss", "final_benchmarks/sliding_loss", "final_benchmarks/memory_loss"):
        assert f[name] > 0, name
    assert f["final_benchmarks/memory_tokens"] > 0
    start = next(e for e in events.read_events(straight.events) if e.kind == events.START)
    assert "xl32" in start.get("label") and start.get("kinds")["memory"] == "xl"
    queued = cockpit("--runs-dir", str(runs_dir), "queue", "add", str(write_config("later", XL)))
    r = cockpit("--runs-dir", str(runs_dir), "status")  # status and queue ls name a run's kinds
    assert queued.returncode == 0 and r.returncode == 0 and "4L" not in r.stdout and "2L×32 xl32" in r.stdout, r.stdout


@pytest.mark.slow
def test_compressive_and_hourglass_runs_train_and_report(write_config, runs_dir):
    compressive = write_config("cmem", {"model": {"pos": "rope", "memory": {"kind": "compressive", "mem_len": 8,
                                                                             "cmem_len": 4, "rate": 2}},
                                        "train": {"max_steps": 8}, "log": {"every": 2}})
    r = cockpit("--headless", "--runs-dir", str(runs_dir), "run", str(compressive))
    assert r.returncode == 0, r.stderr
    rd = RunDir(next(runs_dir.glob("cmem-*")))
    logged = [e.metrics for e in events.read_events(rd.events) if e.kind == events.STEP]
    assert any("debug/compress_loss" in m for m in logged[1:])  # once the memory overflows, the compression learns
    assert "final_benchmarks/memory_loss" in finals(rd)
    hourglass = write_config("hg", {"model": {"pos": "rope", "n_layer": 3,
                                              "shape": {"kind": "hourglass", "shorten": [1, 2, 1]}},
                                    "train": {"max_steps": 8}})
    r = cockpit("--headless", "--runs-dir", str(runs_dir), "run", str(hourglass))
    assert r.returncode == 0, r.stderr
    rd = RunDir(next(runs_dir.glob("hg-*")))
    start = next(e for e in events.read_events(rd.events) if e.kind == events.START)
    assert "hg1-2-1" in start.get("label") and "final_benchmarks/memory_loss" not in finals(rd)


@pytest.mark.slow
def test_completion_keeps_the_memory_over_a_prompt_longer_than_the_context(write_config, runs_dir):
    rd = create_run(write_config("xl", {**XL, "train": {"max_steps": 4}, "eval": {"final": False}}),
                    runs_dir=runs_dir)
    assert engine_train(rd).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "engine", "complete", str(rd.path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1)
    assert json.loads(proc.stdout.readline())["type"] == "ready"
    prompt = "Once upon a time there was a little girl who loved to play outside. " * 3  # ~200 bytes > 32
    proc.stdin.write(json.dumps({"op": "generate", "id": 1, "prompt": prompt, "max_tokens": 40, "seed": 1}) + "\n")
    proc.stdin.flush()
    msgs = []
    while not msgs or msgs[-1]["type"] not in ("done", "error"):
        msgs.append(json.loads(proc.stdout.readline()))
    done = msgs[-1]
    assert done["type"] == "done" and done["tokens"] == 40
    assert done["prompt_tokens"] > 32 * 5 and done["dropped"] == 0 and done["truncated"] is False
    proc.stdin.close()
    assert proc.wait(timeout=PATIENCE) == 0
