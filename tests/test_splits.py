"""Train / val / test splits, raw byte corpora and zips, sliding-window and periodic full
evaluation (issue 12's data and evaluation half)."""

from __future__ import annotations

import math
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import PATIENCE, TINY, merge

from runspec.config.load import config_from_dict
from runspec.config.schema import ConfigError
from runspec.data.corpus import CorpusError
from runspec.data.shards import load_tokens


def raw_corpus(tmp_path, n: int = 3000, name: str = "data.txt"):
    """Bytes that are not UTF-8 (0xff, 0x00 included), like enwik8's."""
    data = bytes((i * 7 + i // 13) % 256 for i in range(n))
    p = tmp_path / name
    p.write_bytes(data)
    return p, data


def data_cfg(path, **keys):
    return config_from_dict({"data": {"path": str(path), **keys}}).data


def test_raw_bytes_are_the_file_exactly_and_the_split_is_contiguous(tmp_path):
    p, data = raw_corpus(tmp_path)
    d = load_tokens(data_cfg(p, raw_bytes=True, val_tokens=500, test_tokens=400), block_size=32, log=lambda m: None)
    assert (len(d.train), len(d.val), len(d.test)) == (2100, 500, 400)
    whole = np.concatenate([d.train, d.val, d.test])
    assert whole.tobytes() == np.frombuffer(data, np.uint8).astype(whole.dtype).tobytes()  # no separators, no decoding


def test_fractions_split_train_val_test_in_that_order(tmp_path):
    p, _ = raw_corpus(tmp_path, 10_000)
    d = load_tokens(data_cfg(p, raw_bytes=True, val_fraction=0.05, test_fraction=0.05), 32, log=lambda m: None)
    assert (len(d.train), len(d.val), len(d.test)) == (9000, 500, 500)
    d = load_tokens(data_cfg(p, raw_bytes=True), 32, log=lambda m: None)
    assert d.test is None and len(d.val) == 1000  # no test split unless asked for


def test_without_raw_bytes_a_non_utf8_file_says_what_to_do(tmp_path):
    p, _ = raw_corpus(tmp_path)
    with pytest.raises(CorpusError, match="raw_bytes = true"):
        load_tokens(data_cfg(p), 32, log=lambda m: None)


def test_a_zip_of_one_file_reads_as_the_file(tmp_path):
    p, data = raw_corpus(tmp_path, name="enwik8")
    z = tmp_path / "enwik8.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as f:
        f.write(p, "enwik8")
    txt, _ = raw_corpus(tmp_path, name="same.txt")
    a = load_tokens(data_cfg(z, raw_bytes=True, val_tokens=300), 32, log=lambda m: None)
    b = load_tokens(data_cfg(txt, raw_bytes=True, val_tokens=300), 32, log=lambda m: None)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    text_zip = tmp_path / "text.zip"
    with zipfile.ZipFile(text_zip, "w") as f:
        f.writestr("story.txt", "héllo wörld " * 200)
    t = load_tokens(data_cfg(text_zip), 32, log=lambda m: None)
    assert t.n_bytes == len(("héllo wörld " * 200).encode())


@pytest.mark.parametrize("make, message", [
    (lambda z: z.writestr("a.txt", "x" * 100) or z.writestr("b.txt", "y" * 100), "exactly one file, this one holds 2"),
    (lambda z: None, "holds 0"),
])
def test_a_zip_that_is_not_one_file_is_refused(tmp_path, make, message):
    z = tmp_path / "bad.zip"
    with zipfile.ZipFile(z, "w") as f:
        make(f)
    with pytest.raises(CorpusError, match=message):
        load_tokens(data_cfg(z), 32, log=lambda m: None)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK not really")
    with pytest.raises(CorpusError, match="not a readable zip"):
        load_tokens(data_cfg(broken), 32, log=lambda m: None)


@pytest.mark.parametrize("data, evals, message", [
    ({"raw_bytes": True, "tokenizer": "gpt2"}, {}, "[data] raw_bytes"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, {}, "[data] test_fraction"),
    ({"test_tokens": -1}, {}, "[data] test_tokens"),
    ({}, {"stride": 32}, "[eval] stride"),
    ({}, {"full_every": -5}, "[eval] full_every"),
])
def test_bad_split_and_eval_keys_are_one_line_errors(data, evals, message):
    with pytest.raises(ConfigError) as e:
        config_from_dict({"model": {"block_size": 32}, "data": data, "eval": evals}, "x.toml")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_splits_too_large_for_the_corpus_are_a_clear_error(tmp_path):
    p, _ = raw_corpus(tmp_path, 1000)
    with pytest.raises(CorpusError, match="cannot hold a validation split of 600 and a test split of 600"):
        load_tokens(data_cfg(p, raw_bytes=True, val_tokens=600, test_tokens=600), 32, log=lambda m: None)


def tiny_trainer(tmp_path, **evals):
    from engine.trainer import Trainer

    p, _ = raw_corpus(tmp_path, 4000)
    cfg = config_from_dict(merge(TINY, {"data": {"path": str(p), "raw_bytes": True, "val_tokens": 300,
                                                 "test_tokens": 200},
                                        "model": {"block_size": 16, "pos": "rope"}, "eval": evals}))
    return Trainer(cfg, log=lambda m: None)


def test_sliding_window_evaluation_equals_a_hand_computation(tmp_path):
    trainer = tiny_trainer(tmp_path, stride=4, final_max_batches=0)
    for _ in range(3):
        trainer.train_step()
    model, T, s = trainer.raw_model.eval(), 16, 4
    val = torch.from_numpy(trainer.data.val.astype(np.int64))
    # by hand, one target at a time: target j (1-based position in the split) is scored in the
    # first window if j <= T, otherwise in the window ending at the smallest o + T >= j with o a
    # multiple of s, whose first T - s targets are context only
    nats, count = 0.0, 0
    last_offset = len(val) - T - 1
    with torch.no_grad():
        for j in range(1, len(val)):
            o = 0 if j <= T else ((j - T + s - 1) // s) * s
            if o > last_offset:
                break  # past the last whole window: not scored (as with non-overlapping windows)
            logits = model(val[o:o + T].unsqueeze(0)).logits[0]
            nats += F.cross_entropy(logits[j - o - 1], val[j]).item()
            count += 1
    offsets, skip = trainer.sliding_offsets()
    res = trainer.evaluate(offsets, skip=skip)
    assert res.tokens == count
    assert res.loss == pytest.approx(nats / count, rel=1e-5)
    assert res.bpc == pytest.approx(res.loss / math.log(2), rel=1e-9) and res.bpb == pytest.approx(res.bpc, rel=1e-9)
    # stride = block_size would be the non-overlapping pass: same tokens scored with less context
    full = trainer.evaluate(trainer.full_val_offsets())
    assert full.tokens == (len(val) - 1) // T * T


@pytest.mark.slow
def test_a_run_evaluates_the_whole_split_periodically_and_the_test_split_at_the_end(write_config, runs_dir, tmp_path):
    from cockpit.runs import create_run
    from runspec.run.events import EVAL, FINAL, read_events

    p, _ = raw_corpus(tmp_path, 6000)
    cfg = write_config("t12data", {"data": {"path": str(p), "raw_bytes": True, "val_tokens": 600, "test_tokens": 500},
                                   "eval": {"every": 5, "full_every": 10, "stride": 8, "final_max_batches": 0},
                                   "train": {"max_steps": 20, "checkpoint_every": 0}})
    rd = create_run(cfg, runs_dir=runs_dir)
    r = subprocess.run([sys.executable, "-m", "engine", "train", str(rd.path)], capture_output=True, text=True,
                       timeout=PATIENCE)
    assert r.returncode == 0, r.stderr
    evs = read_events(rd.events)
    evals = {e.step: e.metrics for e in evs if e.kind == EVAL}
    assert set(evals) == {5, 10, 15}
    assert "train_benchmarks/full_loss" in evals[10] and "train_benchmarks/full_loss" not in evals[5]
    assert evals[10]["train_benchmarks/full_bpc"] == pytest.approx(evals[10]["train_benchmarks/full_loss"] / math.log(2))
    final = next(e for e in evs if e.kind == FINAL).metrics
    T = 32
    assert final["final_benchmarks/tokens"] == (600 - 1) // T * T
    assert final["final_benchmarks/test_tokens"] == (500 - 1) // T * T
    for key in ("test_loss", "test_bpc", "sliding_loss", "sliding_bpc", "test_sliding_loss"):
        assert math.isfinite(final[f"final_benchmarks/{key}"]), key
    assert "non-overlapping windows of 32" in r.stdout + r.stderr
