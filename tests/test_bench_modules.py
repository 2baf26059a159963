"""`cockpit bench modules`: every registered kind is measured, the figures agree with the specs,
and bad shapes are one-line errors."""

from __future__ import annotations

import json

import pytest
from conftest import cockpit

from zoo.kind import PRENORM

TINY = ["--d-model", "32", "--seq", "16", "--batch", "2", "--heads", "4", "--reps", "2", "--warmup", "1", "--max-seconds", "0.2",
        "--device", "cpu", "--no-compile"]


@pytest.fixture(scope="module")
def result():
    r = cockpit("bench", "modules", *TINY, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.slow
def test_every_registered_kind_has_a_row(result):
    from zoo.registry import FAMILIES

    names = {g: [r["name"] for r in result["rows"] if r["group"] == g] for g in ("attention", "ffn")}
    for kind in FAMILIES["attention"]:
        assert any(n.split()[0] == kind for n in names["attention"]), (kind, names)
    for kind in FAMILIES["ffn"]:
        assert any(n.split()[0] == kind for n in names["ffn"]), (kind, names)
    # memories and shapes: whole small models at three contexts, with time and memory per token
    context = {r["name"]: r for r in result["rows"] if r["group"] == "context"}
    for kind in [*FAMILIES["memory"], *FAMILIES["shape"]]:
        if kind in ("none", "stack"):
            kind = "plain"
        for ctx in (8, 16, 32):
            row = next((r for n, r in context.items() if n.split()[0] == kind and n.endswith(f"@ {ctx}")), None)
            assert row and row["fwd_bwd_ms"] > 0 and row["saved_mb"] > 0 and "µs/token" in row["note"], (kind, ctx)
    assert context["hourglass 1-2-1 @ 16"]["params"] == context["plain @ 16"]["params"]  # mean pooling: no parameters


@pytest.mark.slow
def test_figures_are_measured_and_agree_with_the_specs(result):
    from engine.bench_modules import Shape, attention_rows, ffn_rows, model_config

    shape = Shape(32, 16, 2, 4)
    specs = dict(attention_rows(shape) + ffn_rows(shape))
    rows = {r["name"]: r for r in result["rows"]}
    for name, table in specs.items():
        row = rows[name]
        assert row["fwd_bwd_ms"] > 0 and row["decode_ms"] > 0 and row["saved_mb"] > 0, row
        m = model_config(shape, **({"attention": table} if name in dict(attention_rows(shape)) else {"ffn": table}))
        spec = m.attention if name in dict(attention_rows(shape)) else m.ffn
        assert row["params"] == spec.params(m, PRENORM), name  # the module built is the one the spec counts
        if row["group"] == "attention":
            assert row["cache_per_token"] == spec.cache_per_token(m), name
    # MLA caches the latent and one shared RoPE key: less than MHA's full keys and values
    assert rows["mla"]["cache_per_token"] < rows["mha"]["cache_per_token"]
    # explicit softmax keeps the (T, T) attention matrix for backward; SDPA need not
    assert rows["attention: explicit softmax"]["saved_mb"] > rows["attention: sdpa"]["saved_mb"]
    for name in ("qkv: fused (one matmul)", "qkv: separate (three)", "muon: ours", "muon: torch.optim.Muon"):
        assert rows[name]["fwd_bwd_ms"] > 0, rows[name]
    assert rows["qkv: fused (one matmul)"]["params"] == rows["qkv: separate (three)"]["params"]


@pytest.mark.slow
def test_the_table_names_every_row():
    r = cockpit("bench", "modules", *TINY)
    assert r.returncode == 0, r.stderr
    assert "fwd+bwd ms" in r.stdout and "two ways to write the same thing" in r.stdout
    for name in ("mha", "mla absorbed", "dint", "moe 4x2", "attention: sdpa", "muon: torch.optim.Muon"):
        assert f"  {name} " in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--d-model", "30", "--heads", "4"], "--d-model 30 is not divisible by --heads 4"),
    (["--d-model", "48", "--heads", "3"], "--heads 3"),
    (["--device", "gpu"], "--device 'gpu'"),
    (["--seq", "0"], "--seq"),
    (["--groups", "attention,atention"], "--groups atention: not a table of bench modules"),
])
@pytest.mark.slow
def test_bad_shapes_are_one_line_errors(args, message):
    r = cockpit("bench", "modules", *args)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_warnings_name_the_load_and_the_rows_that_did_not_settle():
    from engine.bench_modules import warnings

    rows = [{"name": "mha", "fwd_bwd_ms": 10.0, "fwd_bwd_iqr_ms": 3.0, "decode_ms": 1.0, "decode_iqr_ms": 0.01},
            {"name": "mla", "fwd_bwd_ms": 10.0, "fwd_bwd_iqr_ms": None, "decode_ms": None, "decode_iqr_ms": None}]
    busy, spread = warnings(rows, others=1.5, cores=2, device="cpu")
    assert "1.5 of 2 cores" in busy
    assert "2 timing(s) did not settle" in spread and "mha fwd+bwd ±30%" in spread
    assert "mla fwd+bwd (too few repeats)" in spread and "mha decode" not in spread
    assert warnings(rows[:0], 0.2, 2, "cpu") == []
    assert warnings([], 1.9, 2, "cuda") == []  # a GPU's timings do not share the CPUs' cores


@pytest.mark.slow
def test_a_busy_machine_is_measured_and_said(tmp_path):
    import os
    import subprocess
    import sys

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        r = cockpit("bench", "modules", *TINY, "--groups", "ffn", "--json")  # one table: the load is what is tested
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert {row["group"] for row in result["rows"]} == {"ffn"}
    assert result["other_processes_cores"] > 0.25 * result["cores"]
    assert any("cores busy while this ran" in w for w in result["warnings"])
    for row in result["rows"]:
        if row["fwd_bwd_ms"] is not None:
            assert row["fwd_bwd_iqr_ms"] is None or row["fwd_bwd_iqr_ms"] >= 0
