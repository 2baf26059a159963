"""T12 auxiliary losses: the schedule, the identities of the T12 paper, target alignment,
causality, and a real run that logs every term by name."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import PATIENCE

from engine.model.aux import active_from, shifted_targets
from engine.model.gpt import build_model
from runspec.config.load import config_from_dict
from runspec.config.schema import ConfigError

V = 256


def model_with(aux: dict, n_layer: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    cfg = config_from_dict({"model": {"n_layer": n_layer, "d_model": 32, "n_head": 4, "block_size": 16},
                            "aux": aux})
    return cfg, build_model(cfg, V)


def batch(seed: int = 1, B: int = 2, T: int = 16):
    g = torch.Generator().manual_seed(seed)
    xy = torch.randint(0, V, (B, T + 1), generator=g)
    return xy[:, :-1], xy[:, 1:]


@pytest.mark.parametrize("progress, active", [(0.0, 11), (1 / 24 - 1e-9, 11), (1 / 24, 10), (0.25, 5),
                                              (11 / 24 - 1e-9, 1), (11 / 24, 0), (0.5, 0), (1.0, 0)])
def test_the_t12_schedule_for_twelve_layers(progress, active):
    layers = list(range(1, 12))
    assert len(layers) - active_from(layers, 12, "t12", progress) == active
    assert active_from(layers, 12, "constant", progress) == 0  # constant: always all of them


def test_the_model_uses_the_schedule_and_logs_how_many_are_active():
    _, model = model_with({"intermediate": True})
    x, y = batch()
    for progress, n in ((0.0, 3), (1 / 8, 2), (0.3, 1), (3 / 8, 0)):
        out = model(x, y, progress=progress, metrics=True)
        assert out.metrics["aux/active_layers"].item() == n
        assert sum(k.startswith("aux/layer") for k in out.metrics) == n
        assert ("aux" in out.losses) == (n > 0)


def test_zero_weights_give_the_plain_loss_bit_for_bit():
    _, model = model_with({"intermediate": True, "targets": 1, "layer_weight": 0.0, "target_weight": 0.0})
    _, plain = model_with({})
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("heads.aux.")})
    x, y = batch()
    out = model(x, y, progress=0.0)
    assert "aux" not in out.losses
    assert torch.equal(out.loss, plain(x, y, progress=0.0).loss)


def test_uniform_logits_make_every_term_ln_v():
    _, model = model_with({"intermediate": True, "targets": 2, "schedule": "constant"})
    with torch.no_grad():
        model.heads["aux"].inter.zero_()
        model.heads["aux"].final.zero_()
    x, y = batch()
    out = model(x, y, progress=0.9, metrics=True)
    terms = {k: v.item() for k, v in out.metrics.items() if k.endswith("_loss")}
    assert len(terms) == 3 * 3 + 2  # three layers x three targets, two extra targets at the final layer
    for name, value in terms.items():
        assert value == pytest.approx(math.log(V), rel=1e-6), name
    # weights: next token 1, extra targets 0.5 at every layer
    assert out.losses["aux"].item() == pytest.approx(math.log(V) * (3 * (1 + 0.5 + 0.5) + 2 * 0.5), rel=1e-6)


def test_extra_targets_are_aligned_and_masked():
    x = torch.arange(10).view(1, 10)
    ys = shifted_targets(x[:, 1:], 2)  # windows of 9 targets
    assert ys[0].tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 9]]
    assert ys[1].tolist() == [[2, 3, 4, 5, 6, 7, 8, 9, -1]]  # t+2: x[t+2], the last position has none
    assert ys[2].tolist() == [[3, 4, 5, 6, 7, 8, 9, -1, -1]]


def test_the_final_layers_t_plus_2_loss_is_the_hand_computation():
    _, model = model_with({"targets": 1})
    x, y = batch()
    out = model(x, y, progress=0.0, metrics=True)
    logits = model.heads["aux"].final_logits(out.hidden)[:, :, 0]  # (B, T, V)
    hand = F.cross_entropy(logits[:, :-1].reshape(-1, V), y[:, 1:].reshape(-1))  # position t predicts x[t+2]
    assert out.metrics["aux/final_t2_loss"].item() == pytest.approx(hand.item(), rel=1e-6)
    assert out.losses["aux"].item() == pytest.approx(0.5 * hand.item(), rel=1e-6)


def test_no_auxiliary_output_depends_on_a_future_token():
    _, model = model_with({"intermediate": True, "targets": 1, "schedule": "constant"})
    model.eval()
    x, _ = batch(T=12)
    j = 7
    x2 = x.clone()
    x2[:, j] = (x2[:, j] + 1) % V

    def outputs(idx):
        layers = []
        h = model.wte(idx) + model.wpe(0, idx.size(1), 0, idx.device)
        for block in model.blocks:
            h = block(h, None, None)
            layers.append(h)
        return model.heads["aux"].inter_logits(layers, 0), model.heads["aux"].final_logits(model.ln_f(h))

    with torch.no_grad():
        (a1, f1), (a2, f2) = outputs(x), outputs(x2)
    assert torch.equal(a1[:, :, :j], a2[:, :, :j]) and torch.equal(f1[:, :j], f2[:, :j])
    assert not torch.equal(a1[:, :, j:], a2[:, :, j:])  # and the change is seen from j on


def test_evaluation_and_generation_never_use_the_auxiliary_heads():
    _, model = model_with({"intermediate": True, "targets": 1})
    _, plain = model_with({})
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("heads.aux.")})
    x, _ = batch()
    assert torch.equal(model(x).logits, plain(x).logits)


def test_parameter_counts_include_the_classifiers():
    from runspec.config.shape import count_params

    cfg, model = model_with({"layers": [1, 3], "targets": 1})
    counts = count_params(cfg.model, V, aux=cfg.aux)
    assert counts["total"] == model.num_params() and counts["aux"] == sum(p.numel() for p in model.heads["aux"].parameters())


@pytest.mark.parametrize("aux, message", [
    ({"layers": [0, 2]}, "[aux] layers: found [0]"),
    ({"layers": [4]}, "numbered 1 .. 3"),
    ({"layers": [1.5]}, "a list of whole numbers"),
    ({"targets": -1}, "[aux] targets"),
    ({"layer_weight": -1.0}, "[aux] layer_weight"),
    ({"schedule": "paper"}, "allowed: t12, constant"),
])
def test_bad_aux_keys_are_one_line_errors(aux, message):
    with pytest.raises(ConfigError) as e:
        config_from_dict({"model": {"n_layer": 4}, "aux": aux}, "x.toml")
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_a_run_logs_every_auxiliary_loss_by_name(write_config, runs_dir):
    from cockpit.runs import create_run
    from runspec.run.events import EVAL, STEP, read_events

    cfg = write_config("t12", {"model": {"n_layer": 3}, "aux": {"intermediate": True, "targets": 1},
                               "train": {"max_steps": 24, "checkpoint_every": 0}, "log": {"every": 4}})
    rd = create_run(cfg, runs_dir=runs_dir)
    r = subprocess.run([sys.executable, "-m", "engine", "train", str(rd.path)], capture_output=True, text=True,
                       timeout=PATIENCE)
    assert r.returncode == 0, r.stderr
    steps = [e for e in read_events(rd.events) if e.kind == STEP]
    first, last = steps[0].metrics, steps[-1].metrics
    # layer 1 of 3 stops after 1/6 of training, layer 2 after 1/3: the count falls to zero
    assert first["debug/aux/active_layers"] == 2 and last["debug/aux/active_layers"] == 0
    assert {"debug/aux/layer1_t1_loss", "debug/aux/layer1_t2_loss", "debug/aux/layer2_t1_loss",
            "debug/aux/final_t2_loss", "debug/aux_loss", "train/objective"} <= set(first)
    assert "debug/aux/layer1_t1_loss" not in last and "debug/aux/final_t2_loss" in last
    # train/loss is the LM loss, comparable with validation; the objective adds the weighted terms
    assert first["train/objective"] > first["train/loss"]
    assert any(e.kind == EVAL for e in read_events(rd.events))
