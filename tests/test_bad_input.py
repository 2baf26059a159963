"""Bad input, tried as a new user would: every case is one clear line on
stderr naming the file, key or value, exit status 2, and every run, queue entry and checkpoint
that was there before is untouched."""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tomli_w
from conftest import ROOT, TINY, cockpit, merge

from cockpit.queue import Queue


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A runs directory with a finished run (checkpoints) and a queued one."""
    root = tmp_path_factory.mktemp("bad")
    runs = root / "runs"
    cfg = root / "good.toml"
    cfg.write_text(tomli_w.dumps(merge(TINY, {"train": {"max_steps": 10}})))
    r = cockpit("--headless", "--runs-dir", str(runs), "run", str(cfg), "--name", "done")
    assert r.returncode == 0, r.stderr
    Queue(runs).add([str(cfg)], name="waiting")
    return root


def fingerprint(runs: Path) -> dict[str, str]:
    """Every file under runs/ with its content hash, except the ones a read may refresh."""
    out = {}
    for p in sorted(runs.rglob("*")):
        if p.is_file() and p.name not in (".lock", "queue.lock") and not p.name.endswith(".tmp"):
            out[str(p.relative_to(runs))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def config(root: Path, name: str, extra: dict | None = None, text: str | None = None) -> str:
    path = root / f"{name}.toml"
    path.write_text(text if text is not None else tomli_w.dumps(merge(TINY, extra or {})))
    return str(path)


def data_file(root: Path, name: str, content: bytes) -> str:
    path = root / name
    path.write_bytes(content)
    return str(path)


def parquet(root: Path, name: str, columns: dict, truncate: bool = False) -> str:
    path = root / name
    pq.write_table(pa.table(columns), path)
    if truncate:
        path.write_bytes(path.read_bytes()[:-40])
    return str(path)


def cases(root: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (cockpit arguments, what the one line must say)."""
    no_data = root / "empty_dir"
    no_data.mkdir(exist_ok=True)
    (no_data / "readme.md").write_text("not a corpus")
    data = lambda path: {"data": {"path": path}}  # noqa: E731
    return {
        "malformed TOML": (["queue", "add", config(root, "m", text="[model\nn_layer = 2")], "TOML syntax"),
        "unknown key": (["queue", "add", config(root, "u", {"model": {"n_layers": 2}})], "did you mean 'n_layer'"),
        "wrong type": (["queue", "add", config(root, "w", {"train": {"max_steps": "ten"}})], "expected an integer"),
        "zero steps": (["queue", "add", config(root, "z", {"train": {"max_steps": 0}})], "[train] max_steps"),
        "negative steps": (["queue", "add", config(root, "n", {"train": {"max_steps": -5}})], "[train] max_steps"),
        "absurd steps": (["queue", "add", config(root, "g", {})], "must be between 1 and 1,000,000,000"),
        "heads not dividing the width": (["queue", "add", config(root, "h", {"model": {"n_head": 5}})],
                                         "not divisible by n_head"),
        "infinite lr": (["queue", "add", config(root, "i", {"optim": {"lr": float("inf")}})],
                        "expected a finite number"),
        "no running-validation batches": (["queue", "add", config(root, "e", {"eval": {"batches": 0}})],
                                          "[eval] batches"),
        "missing config": (["queue", "add", str(root / "nope.toml")], "does not exist"),
        "garbage --set": (["queue", "add", config(root, "s"), "--set", "max_steps"], "expected section.key=value"),
        "unknown tokenizer": (["queue", "add", config(root, "t", {"data": {"tokenizer": "gtp2"}})], "gtp2"),
        "missing data": (["--headless", "run", config(root, "md", data(str(root / "none.txt")))], "does not exist"),
        "directory without data": (["--headless", "run", config(root, "dd", data(str(no_data)))],
                                   "holds no .parquet, .jsonl or .txt"),
        "empty data": (["--headless", "run", config(root, "ed", data(data_file(root, "e.txt", b"")))], "empty"),
        "binary data": (["--headless", "run", config(root, "bd", data(data_file(root, "b.txt", bytes(range(256)) * 9)))],
                        "not valid UTF-8"),
        "non-UTF-8 data": (["--headless", "run", config(root, "nu", data(data_file(root, "l.txt", "é".encode("latin-1")
                                                                                             * 900)))],
                           "not valid UTF-8"),
        "parquet without the text column": (["--headless", "run", config(root, "pc", data(parquet(
            root, "c.parquet", {"body": ["x" * 100] * 20})))], "no 'text' column"),
        "truncated parquet": (["--headless", "run", config(root, "pt", data(parquet(
            root, "t.parquet", {"text": ["y" * 100] * 20}, truncate=True)))], "not a readable parquet file"),
        "context longer than the corpus": (["--headless", "run", config(root, "cl", {
            **data(data_file(root, "short.txt", b"a short corpus" * 4)), "model": {"block_size": 64}})],
            "shorter than one context"),
        "resume of a run that does not exist": (["--headless", "resume", "nope"], "no run 'nope'"),
        "resume of a completed run": (["--headless", "resume", "done"], "already trained 10/10 steps"),
        "completion without a checkpoint": (["complete", "waiting", "--prompt", "x"], "no checkpoint yet"),
        "bench with zero steps": (["bench", "train", config(root, "b"), "--steps", "0"], "must be at least 1"),
        "--gpus without that GPU": (["worker", "--gpus", "7"], "GPU"),
        "garbage --gpus": (["worker", "--gpus", "a,b"], "give distinct GPU indices"),
        # issue 26: every number finite and in range, with the real limits in the message
        "negative budget": (["analyze", "scaling", "--budget", "-1", "done"], "-1: must be a finite number > 0"),
        "negative hours": (["analyze", "scaling", "--hours", "-2", "done"], "-2: must be a finite number > 0"),
        "infinite budget": (["analyze", "scaling", "--budget", "inf", "done"], "inf: must be a finite number"),
        "zero budget": (["analyze", "scaling", "--budget", "0", "done"], "0: must be a finite number > 0"),
        "runs and a sweep": (["analyze", "scaling", "--sweep", "s", "done"], "give runs or --sweep s, not both"),
        "threshold over 100%": (["worker", "--once", "--threshold", "150"], "a percentage from 0 to 100"),
        "negative grace": (["keepawake", "--grace", "-5"], "finite number >= 0"),
        "negative seed": (["complete", "done", "--prompt", "x", "--seed", "-3"], "between 0 and"),
        "huge seed": (["corpora", "mix", "o", "--source", "a=1", "--seed", str(2**70)], "between 0 and"),
        "position 0": (["queue", "mv", "waiting", "--to", "0"], "must be at least 1"),
        "resume to 0 steps": (["--headless", "resume", "done", "--max-steps", "0"], "must be at least 1"),
        "negative step": (["complete", "done", "--step", "-1", "--prompt", "x"], "must be 0 or more"),
        "resume below what was trained": (["--headless", "resume", "done", "--max-steps", "5"],
                                          "has already trained 10 steps, more than --max-steps 5"),
        "export without a checkpoint": (["export", "waiting", "--merged", str(root / "out.pt")],
                                        "has no checkpoint yet (queued)"),
        "cuda where there is none": (["--headless", "run", config(root, "cu", {"train": {"device": "cuda"}})],
                               "[train] device = 'cuda': this machine shows no NVIDIA GPU"),
    }


CASES = ["malformed TOML", "unknown key", "wrong type", "zero steps", "negative steps", "absurd steps",
         "heads not dividing the width", "infinite lr", "no running-validation batches", "missing config",
         "garbage --set", "unknown tokenizer", "missing data", "directory without data", "empty data", "binary data",
         "non-UTF-8 data", "parquet without the text column", "truncated parquet", "context longer than the corpus",
         "resume of a run that does not exist", "resume of a completed run", "completion without a checkpoint",
         "bench with zero steps", "--gpus without that GPU", "garbage --gpus", "negative budget", "negative hours",
         "infinite budget", "zero budget", "runs and a sweep", "threshold over 100%", "negative grace",
         "negative seed", "huge seed", "position 0", "resume to 0 steps", "negative step",
         "resume below what was trained", "export without a checkpoint", "cuda where there is none"]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_damages_nothing(workspace, case):
    runs = workspace / "runs"
    args, expected = cases(workspace)[case]
    if case == "absurd steps":
        args = args + ["--set", "train.max_steps=99999999999999999"]
    before = fingerprint(runs)
    order = Queue(runs).order
    r = cockpit("--runs-dir", str(runs), *args, env={"COCKPIT_FAKE_GPUS": "2"} if "GPU" in case else None)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert expected in r.stderr, r.stderr
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "Traceback" not in r.stderr, r.stderr
    after = fingerprint(runs)
    # what was there is untouched; a run the engine refused is a new, failed directory beside it
    assert {k: v for k, v in after.items() if k in before} == before
    assert Queue(runs).order == order


@pytest.mark.slow
def test_a_run_id_from_a_300_character_name_is_cut_to_fit(write_config, runs_dir):
    r = cockpit("--runs-dir", str(runs_dir), "queue", "add", str(write_config("n")), "--name", "x" * 300)
    assert r.returncode == 0, r.stderr
    (run,) = [p for p in runs_dir.iterdir() if not p.name.startswith(".")]
    assert len(run.name) <= 80 and run.name.startswith("xxxx")


@pytest.mark.slow
def test_runs_dir_that_is_a_file_is_one_line(write_config, tmp_path):
    f = tmp_path / "afile"
    f.write_text("")
    for args in (["status"], ["queue", "add", str(write_config("q"))], ["queue", "ls"]):
        r = cockpit("--runs-dir", str(f), *args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is a file, not a directory" in r.stderr


def _limit_file_size(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_failing_writes_are_one_line_and_leave_the_queue_as_it_was(write_config, runs_dir):
    """A full disk, here as a file-size limit: writes fail with an OSError as they would."""
    q = Queue(runs_dir)
    q.add([str(write_config("first"))])
    before = fingerprint(runs_dir)
    for args in (["queue", "add", str(write_config("second"))], ["queue", "pause"]):
        r = subprocess.run([sys.executable, "-m", "cockpit", "--runs-dir", str(runs_dir), *args], cwd=ROOT,
                           capture_output=True, text=True, preexec_fn=_limit_file_size(16))
        assert r.returncode == 1 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
        assert "Traceback" not in r.stderr and "File too large" in r.stderr
        assert fingerprint(runs_dir) == before  # no half-created run, the queue as it was


@pytest.mark.slow
def test_a_failing_checkpoint_write_is_one_line_and_the_run_fails_cleanly(write_config, runs_dir, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("small corpus for a failing disk. " * 200)
    cfg = write_config("disk", {"data": {"path": str(corpus)}, "train": {"max_steps": 10, "checkpoint_every": 5}})
    r = subprocess.run([sys.executable, "-m", "cockpit", "--runs-dir", str(runs_dir), "--headless", "run", str(cfg)],
                       cwd=ROOT, capture_output=True, text=True, preexec_fn=_limit_file_size(150_000),
                       env={**os.environ, "COCKPIT_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr  # the run failed; its input was fine
    assert "could not be written (File too large)" in r.stderr and "no earlier checkpoint exists" in r.stderr
    (run,) = [p for p in runs_dir.iterdir() if not p.name.startswith(".")]
    assert not list((run / "checkpoints").glob("*.tmp")) and not list((run / "checkpoints").glob("*.pt"))


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly(write_config, runs_dir):
    Queue(runs_dir).add([str(write_config("q"))] * 40)
    r = subprocess.run(f"{sys.executable} -m cockpit --runs-dir {runs_dir} queue ls | head -1", shell=True, cwd=ROOT,
                       capture_output=True, text=True)
    assert r.stdout.startswith("queue") and r.stderr == ""
    r = subprocess.run(f"{sys.executable} -m cockpit --runs-dir {runs_dir} status | head -1", shell=True, cwd=ROOT,
                       capture_output=True, text=True)
    assert r.stdout.startswith("worker") and r.stderr == ""


@pytest.mark.slow
def test_a_run_directory_deleted_while_training_is_not_recreated(write_config, runs_dir):
    """Before: the engine re-created RUN/checkpoints/step_N.pt and .lock without a state.json,
    an orphan that no listing shows."""
    import shutil
    import time

    from conftest import PATIENCE

    from cockpit.runs import create_run

    cfg = write_config("long", {"train": {"max_steps": 100000, "checkpoint_every": 5}, "log": {"every": 1},
                                "eval": {"every": 0}})
    rd = create_run(cfg, name="doomed", runs_dir=runs_dir)
    proc = subprocess.Popen([sys.executable, "-m", "engine", "train", str(rd.path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + PATIENCE
    while not list(rd.checkpoints.glob("step_*.pt")) and time.monotonic() < end:
        time.sleep(0.05)
    while rd.path.exists():  # (a checkpoint being written meanwhile may make one attempt fail)
        shutil.rmtree(rd.path, ignore_errors=True)
    out, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 2 and "was deleted while training" in err, (out, err)
    assert not rd.path.exists()


@pytest.mark.slow
def test_export_of_or_depending_on_a_failed_run_says_it_failed(write_config, runs_dir, tmp_path):
    """Before: 'no checkpoint yet; train the run first', for a run that can only fail again as it is."""
    short = tmp_path / "short.txt"
    short.write_text("a short corpus" * 4)  # the engine refuses it at start: shorter than one context
    cfg = write_config("short", {"data": {"path": str(short)}, "model": {"block_size": 64}})
    assert cockpit("--headless", "--runs-dir", str(runs_dir), "run", str(cfg), "--name", "broken").returncode == 2
    r = cockpit("--runs-dir", str(runs_dir), "export", "broken", "--merged", str(tmp_path / "x.pt"))
    assert r.returncode == 2 and "failed before writing a checkpoint" in r.stderr and "shorter than" in r.stderr
    assert "train the run first" not in r.stderr and not (tmp_path / "x.pt").exists()
    before = fingerprint(runs_dir)
    r = cockpit("--runs-dir", str(runs_dir), "queue", "add", str(write_config("next")), "--depends-on", "broken")
    assert r.returncode == 2 and "it failed, so this run would never start" in r.stderr and "queue retry" in r.stderr
    assert fingerprint(runs_dir) == before  # (before: accepted, to wait forever)


@pytest.mark.slow
def test_an_encoding_that_cannot_be_downloaded_is_hinted_in_the_commands_flags(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("some text to count")
    offline = {"TIKTOKEN_CACHE_DIR": str(tmp_path / "empty-cache"), "HTTPS_PROXY": "http://127.0.0.1:9",
               "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    r = cockpit("corpora", "size", str(text), "--tokenizer", "r50k_base", env=offline)
    assert r.returncode == 2 and "pass --tokenizer bytes" in r.stderr and "tokenizer = 'bytes'" not in r.stderr


@pytest.mark.slow
def test_corpora_size_hints_in_its_own_terms(tmp_path):
    """Before: a missing path was hinted '--set data.path=...', a run's config syntax."""
    r = cockpit("corpora", "size", str(tmp_path / "nowhere"), "--tokenizer", "bytes")
    assert r.returncode == 1 and "nowhere: does not exist" in r.stderr and "--set" not in r.stderr


@pytest.mark.slow
def test_the_engine_names_a_device_it_cannot_use(write_config, runs_dir):
    """Before: an AssertionError line (torch's 'Torch not compiled with CUDA enabled')."""
    import torch

    from cockpit.runs import create_run

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    rd = create_run(write_config("cu", {"train": {"device": "cuda"}}), runs_dir=runs_dir)
    r = subprocess.run([sys.executable, "-m", "engine", "train", str(rd.path)], capture_output=True, text=True)
    assert r.returncode == 2 and "[train] device = 'cuda', but torch sees no CUDA device here" in r.stderr
    assert "AssertionError" not in r.stderr and "Traceback" not in r.stderr
