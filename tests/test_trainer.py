"""The training step in-process: precisions, gradient accumulation, compile, and sampling."""

import pytest
import torch

from engine.trainer import Trainer
from runspec.config.load import load_config


@pytest.fixture
def tiny(write_config):
    def _make(**sections):
        return Trainer(load_config(write_config("t", sections)), log=lambda m: None)

    return _make


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_every_precision_trains_on_cpu(tiny, precision):
    tr = tiny(train={"precision": precision}, optim={"warmup_steps": 0, "lr": 1e-2})
    first, _ = tr.train_step()
    for _ in range(15):
        last, metrics = tr.train_step(want_metrics=True)
    assert torch.isfinite(last) and last.item() < first.item()
    assert metrics["train/grad_norm"] > 0
    assert (tr.scaler.is_enabled()) == (precision == "fp16")


def test_grad_accumulation_matches_one_big_batch(tiny):
    """2 micro-batches of 4 == 1 batch of 8: the data stream and the update are the same."""
    a = tiny(train={"batch_size": 8, "grad_accum": 1, "grad_clip": 0.0})
    b = tiny(train={"batch_size": 4, "grad_accum": 2, "grad_clip": 0.0})
    la, _ = a.train_step()
    lb, _ = b.train_step()
    assert la.item() == pytest.approx(lb.item(), rel=1e-5)
    # compare the gradient the optimizer saw (exp_avg = (1 - beta1) g), not the new weights: Adam's
    # first step is about lr * sign(g), so a gradient near zero turns float noise into a step of lr
    for ga, gb in zip(a.opt.optimizers[0].param_groups, b.opt.optimizers[0].param_groups):
        for pa, pb in zip(ga["params"], gb["params"]):
            ma, mb = a.opt.optimizers[0].state[pa]["exp_avg"], b.opt.optimizers[0].state[pb]["exp_avg"]
            assert torch.allclose(ma, mb, rtol=1e-4, atol=1e-8)
    assert a.tokens_seen == b.tokens_seen == 8 * 32


def first_moment_norm(tr: Trainer) -> float:
    """After one AdamW step, exp_avg = (1 - beta1) * g: the gradient the optimizer saw."""
    opt = tr.opt.optimizers[0]
    beta1 = opt.param_groups[0]["betas"][0]
    moments = [opt.state[p]["exp_avg"] for g in opt.param_groups for p in g["params"]]
    return torch.linalg.vector_norm(torch.stack([m.norm() for m in moments])).item() / (1 - beta1)


def test_grad_clipping_caps_the_gradient_the_optimizer_sees(tiny):
    clipped = tiny(train={"grad_clip": 1e-3})
    _, metrics = clipped.train_step(want_metrics=True)
    assert metrics["train/grad_norm"].item() > 1e-2  # logged: the norm before clipping
    assert first_moment_norm(clipped) == pytest.approx(1e-3, rel=1e-3)
    free = tiny(train={"grad_clip": 0.0})
    free.train_step()
    assert first_moment_norm(free) == pytest.approx(metrics["train/grad_norm"].item(), rel=1e-3)


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one(tiny):
    eager = tiny(optim={"warmup_steps": 0})
    compiled = tiny(optim={"warmup_steps": 0}, train={"compile": True})
    le = [eager.train_step()[0].item() for _ in range(3)]
    lc = [compiled.train_step()[0].item() for _ in range(3)]
    assert lc == pytest.approx(le, rel=1e-3)


def test_compile_auto_compiles_only_where_the_run_is_long_enough_to_pay(tiny):
    from engine.trainer import compile_choice
    from runspec.config.load import config_from_dict

    short = tiny()
    assert short.compiled is False and short.compile_reason.startswith("auto: eager (~0 min of steps")
    assert short.summary()["compile"] is False
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    long = config_from_dict({"model": {"n_layer": 12, "d_model": 768, "n_head": 12, "block_size": 1024},
                             "train": {"max_steps": 100_000, "batch_size": 32}})
    flops = 6 * 85e6
    assert compile_choice(long, cuda, flops, 989e12)[0] is True  # hours on a GPU: compiling pays
    assert compile_choice(long, cpu, flops, 150e9)[0] is True
    assert compile_choice(long, mps, flops, 1e12) == (False, "auto: eager on mps")
    quick = config_from_dict({"train": {"max_steps": 400}})
    assert compile_choice(quick, cpu, 6 * 1e6, 150e9)[0] is False  # a minute of steps: 30 s to compile does not pay
    pinned = config_from_dict({"train": {"compile": False, "max_steps": 100_000}})
    assert pinned.train.compile == "false" and compile_choice(pinned, cuda, flops, 989e12) == (False, "compile = false")


def test_evaluation_reports_loss_and_bits_per_byte(tiny):
    tr = tiny()
    res = tr.evaluate(tr.full_val_offsets())
    # bytes tokenizer: one byte per token except the separator, so bpb ~ loss / ln 2
    assert res.bpb == pytest.approx(res.loss / 0.6931, rel=0.05)
    assert res.tokens == 4 * 4 * 32  # final_max_batches x batch_size x block_size


def test_samples_are_deterministic_and_leave_the_training_rng_alone(tiny):
    tr = tiny(eval={"sample_tokens": 40})
    state = torch.get_rng_state()
    a, b = tr.sample(seed=5), tr.sample(seed=5)
    assert a == b and len(a.encode()) >= 30
    assert torch.equal(state, torch.get_rng_state())


def test_prefetching_changes_neither_the_batches_nor_the_checkpointed_data_position(tiny):
    """Batches built ahead in a thread are the ones built in the step, and the data position a
    checkpoint records is the next step's, not the prefetcher's."""
    ahead, inline = tiny(train={"prefetch": 3}), tiny(train={"prefetch": 0})
    for _ in range(5):
        la, _ = ahead.train_step()
        lb, _ = inline.train_step()
        assert la.item() == lb.item()
    assert len(ahead.batches.pending) == 3  # three steps are waiting, drawn from the generator
    assert torch.equal(ahead.state()["rng"]["batch"], inline.state()["rng"]["batch"])
    resumed = tiny(train={"prefetch": 3})
    resumed.train_step()  # it has prefetched from its own position: loading must drop that
    resumed.load_state(ahead.state())
    assert resumed.train_step()[0].item() == ahead.train_step()[0].item() == inline.train_step()[0].item()


@pytest.mark.parametrize("model", [
    {"attention": "mla"}, {"attention": "diff", "n_head": 4}, {"attention": "dint", "n_head": 4},
    {"ffn": {"kind": "moe", "experts": 3, "top_k": 2}},
    {"block": "ngpt", "tie_embeddings": False}], ids=["mla", "diff", "dint", "moe", "ngpt"])
def test_every_zoo_kind_trains_under_bf16_autocast(tiny, model):
    """Autocast gives bf16 activations beside an fp32 residual stream: a kind that mixes them in
    one op fails only here (MoE's index_add_ did, first seen on a GPU)."""
    tr = tiny(model=model, train={"precision": "bf16"}, optim={"warmup_steps": 0, "lr": 1e-2})
    first, _ = tr.train_step()
    for _ in range(3):
        last, _ = tr.train_step()
    assert torch.isfinite(last) and last.item() < first.item() + 0.5
