"""Optimizer grouping and learning-rate schedules."""

import pytest
import torch

from engine.model import build_model
from engine.muon import Muon, orthogonalize
from engine.optim import build_optimizers, lr_factor
from runspec.config.schema import RunConfig


def cfg_with(**optim) -> RunConfig:
    cfg = RunConfig()
    cfg.train.max_steps = 1000
    for k, v in optim.items():
        setattr(cfg.optim, k, v)
    return cfg


def test_warmup_then_cosine_to_min_lr():
    cfg = cfg_with(warmup_steps=100, lr=1e-3, min_lr=1e-4, schedule="cosine")
    assert lr_factor(cfg, 0) == pytest.approx(1 / 101)
    assert lr_factor(cfg, 99) == pytest.approx(100 / 101)
    assert lr_factor(cfg, 100) == pytest.approx(1.0)
    assert lr_factor(cfg, 550) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(cfg, 1000) == pytest.approx(0.1) and lr_factor(cfg, 5000) == pytest.approx(0.1)


def test_linear_constant_and_wsd_shapes():
    assert lr_factor(cfg_with(warmup_steps=0, schedule="linear", min_lr=0.0), 500) == pytest.approx(0.5)
    assert lr_factor(cfg_with(warmup_steps=10, schedule="constant"), 900) == 1.0
    wsd = cfg_with(warmup_steps=10, schedule="wsd", wsd_decay_fraction=0.2, min_lr=0.0)
    assert lr_factor(wsd, 500) == 1.0 and lr_factor(wsd, 799) == 1.0
    assert lr_factor(wsd, 900) == pytest.approx(0.5) and lr_factor(wsd, 1000) == pytest.approx(0.0)


def test_adamw_groups_decay_matrices_only_and_scale_the_embedding_lr():
    cfg = cfg_with(wte_lr_scale=0.01, lr=1e-3, weight_decay=0.1)
    model = build_model(cfg, 256)
    opt = build_optimizers(model, cfg, "cpu")
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["embeddings"]["params"] == [model.wte.weight]
    assert groups["embeddings"]["base_lr"] == pytest.approx(1e-5)
    assert all(p.dim() >= 2 for p in groups["decay"]["params"]) and groups["decay"]["weight_decay"] == 0.1
    assert all(p.dim() < 2 for p in groups["no_decay"]["params"]) and groups["no_decay"]["weight_decay"] == 0.0
    n = sum(len(g["params"]) for g in opt.param_groups)
    assert n == len(list(model.parameters()))  # every parameter exactly once
    opt.set_lr(0.5)
    assert groups["embeddings"]["lr"] == pytest.approx(5e-6) and groups["decay"]["lr"] == pytest.approx(5e-4)


def test_muon_takes_hidden_matrices_and_adamw_the_rest():
    cfg = cfg_with(name="muon", muon_lr=0.02)
    cfg.model.tie_embeddings = False
    cfg.model.output_projection = True
    model = build_model(cfg, 256)
    opt = build_optimizers(model, cfg, "cpu")
    adam, muon = opt.optimizers
    assert isinstance(muon, Muon)
    muon_params = {id(p) for g in muon.param_groups for p in g["params"]}
    assert id(model.blocks[0].attn.qkv.weight) in muon_params
    assert id(model.output_projection.weight) in muon_params
    assert id(model.wte.weight) not in muon_params and id(model.lm_head.weight) not in muon_params
    assert all(p.dim() == 2 for g in muon.param_groups for p in g["params"])
    # one step of each runs
    x = torch.randint(0, 256, (2, 16))
    model(x, x).loss.backward()
    before = model.blocks[0].attn.qkv.weight.detach().clone()
    for o in opt.optimizers:
        o.step()
    assert not torch.equal(before, model.blocks[0].attn.qkv.weight)


def test_newton_schulz_keeps_singular_vectors_and_flattens_singular_values():
    torch.manual_seed(0)
    g = torch.randn(32, 96)
    o = orthogonalize(g)
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    m = u.T @ o @ vh.T  # o expressed in g's singular basis
    assert (m - torch.diag(m.diagonal())).abs().max() < 0.05  # same singular vectors
    assert m.diagonal().min() > 0.5 and m.diagonal().max() < 1.5  # singular values near 1
    assert orthogonalize(g.T).shape == (96, 32)


def test_muon_rejects_non_matrices():
    import pytest as _pytest

    with _pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(4))])


def test_muon_never_gets_experts_routers_or_scales():
    from engine.model.roles import param_table
    from runspec.config.load import config_from_dict

    cfg = config_from_dict({"model": {"n_layer": 1, "d_model": 32, "n_head": 4, "ffn": {"kind": "moe", "experts": 2},
                                      "attention": "diff"}, "optim": {"name": "muon"}})
    model = build_model(cfg, 64)
    opts = build_optimizers(model, cfg, "cpu")
    muon = {id(p) for g in opts.optimizers[1].param_groups for p in g["params"]}
    roles = {p.name: p.role for p in param_table(model) if id(p.param) in muon}
    assert roles and set(roles.values()) == {"matrix"}  # experts (3-D), router, λ vectors: all on AdamW


def _train(rd, timeout=None, threads: int | None = None):
    import os
    import subprocess
    import sys

    from conftest import PATIENCE

    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
    return subprocess.run([sys.executable, "-m", "engine", "train", str(rd.path)], capture_output=True, text=True,
                          timeout=timeout or PATIENCE, env=env)


def _losses(rd):
    from runspec.run import events

    return {e.step: e.metrics["train/loss"] for e in events.read_events(rd.events) if e.kind == events.STEP}


@pytest.mark.slow
def test_ivon_trains_resumes_exactly_and_scores_the_posterior(write_config, runs_dir):
    from cockpit.runs import create_run, prepare_resume
    from runspec.run import events

    extra = {"optim": {"name": "ivon", "lr": 0.1, "warmup_steps": 2, "decay_steps": 12, "ivon_mc_samples": 2},
             "train": {"max_steps": 12, "checkpoint_every": 0}, "log": {"every": 1},
             "eval": {"every": 0, "posterior_samples": 2, "final_max_batches": 2}}
    # One intra-op thread: with two, the resumed run's losses differed from the straight one's in
    # the 6th decimal now and then (about 1 run in 4 here, with the batch thread on or off, on the
    # tree before the restructuring too; 8 of 8 equal with one thread). The cause is not found yet:
    # some CPU kernel whose result depends on the threads, which is not what this test is about.
    straight = create_run(write_config("ivon", extra), runs_dir=runs_dir)
    assert _train(straight, threads=1).returncode == 0, straight.log
    extra["train"]["max_steps"] = 6
    split = create_run(write_config("ivon_split", extra), runs_dir=runs_dir)
    assert _train(split, threads=1).returncode == 0
    prepare_resume(split, max_steps=12, max_time=None)
    assert _train(split, threads=1).returncode == 0
    a, b = _losses(straight), _losses(split)
    assert sorted(a) == list(range(1, 13)) and [a[s] for s in a] == [b[s] for s in a]  # bit-exact across a resume
    final = next(e for e in events.read_events(straight.events) if e.kind == events.FINAL).metrics
    assert final["final_benchmarks/posterior_loss"] > 0 and final["final_benchmarks/loss"] > 0
    start = next(e for e in events.read_events(straight.events) if e.kind == events.START)
    assert start.get("optimizer") == "ivon"


@pytest.mark.slow
def test_orthograd_wraps_the_chosen_optimizer_in_a_real_run(write_config, runs_dir):
    from cockpit.runs import create_run
    from runspec.run import events

    rd = create_run(write_config("og", {"optim": {"name": "muon", "orthograd": True}, "train": {"max_steps": 10}}),
                    runs_dir=runs_dir)
    assert _train(rd).returncode == 0
    start = next(e for e in events.read_events(rd.events) if e.kind == events.START)
    assert start.get("optimizer") == "muon + orthograd"
    losses = _losses(rd)
    assert losses[10] < losses[5]


def test_orthograd_gives_a_one_element_tensor_no_step():
    """Its gradient is always parallel to its weight: the orthogonal part is zero or one ulp of
    rounding, which must not be rescaled into a full-size step of random sign."""
    from engine.optim import orthogonalize_grads

    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        w = torch.nn.Parameter(torch.rand(1, generator=g) + 0.1)
        w.grad = torch.rand(1, generator=g) - 0.5
        orthogonalize_grads([w])
        assert w.grad.item() == 0.0
