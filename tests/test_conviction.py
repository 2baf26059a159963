"""The conviction head: its targets, where its loss sends gradients, and how it is judged."""

import math

import numpy as np
import pytest
import torch

from engine.model import build_model
from engine.stats import auroc, spearman
from runspec.config.schema import RunConfig


def make(tied: bool = True, target: str = "cosine", output_projection: bool = False, **conv):
    cfg = RunConfig()
    for k, v in dict(n_layer=2, d_model=16, n_head=2, block_size=8, tie_embeddings=tied,
                     output_projection=output_projection).items():
        setattr(cfg.model, k, v)
    cfg.conviction.enabled = True
    cfg.conviction.target = target
    for k, v in conv.items():
        setattr(cfg.conviction, k, v)
    torch.manual_seed(0)
    return cfg, build_model(cfg, 64)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("target", ["cosine", "dot", "l2"])
def test_targets_match_a_hand_computation(tied, target):
    cfg, model = make(tied=tied, target=target, output_projection=True)
    x, y = torch.randint(0, 64, (1, 8)), torch.randint(0, 64, (1, 8))
    out = model(x, y)
    W = model.lm_head.weight if not tied else model.wte.weight  # e_y: the LM-head row (= embedding when tied)
    expected_conv_loss = 0.0
    for t in range(8):
        e, h = W[y[0, t]].tolist(), out.lm_input[0, t].tolist()  # h: what the LM head reads
        dot = sum(a * b for a, b in zip(e, h))
        norm = lambda v: math.sqrt(sum(a * a for a in v))  # noqa: E731
        value = {"cosine": dot / (norm(e) * norm(h)), "dot": dot,
                 "l2": math.sqrt(sum((a - b) ** 2 for a, b in zip(e, h)))}[target]
        expected_conv_loss += (out.conviction[0, t].item() - value) ** 2 / 8
    assert out.conviction_loss.item() == pytest.approx(expected_conv_loss, rel=1e-4)
    assert out.loss.item() == pytest.approx(out.ce_loss.item() + 0.01 * expected_conv_loss, rel=1e-5)
    assert model.heads["conviction"].proj.in_features == 16 and model.heads["conviction"].proj.out_features == 1


def test_head_reads_the_hidden_state_before_the_output_projection():
    _, model = make(output_projection=True)
    out = model(torch.randint(0, 64, (1, 8)))
    assert torch.allclose(out.conviction, model.heads["conviction"].proj(out.hidden).squeeze(-1))


def conviction_grads(model) -> dict[str, float]:
    """Gradient norms from the conviction loss alone."""
    x, y = torch.randint(0, 64, (2, 8)), torch.randint(0, 64, (2, 8))
    model.zero_grad()
    model(x, y).conviction_loss.backward()

    def norm(params):
        return sum(float(p.grad.norm()) for p in params if p.grad is not None)

    return {"lm_head": norm([model.lm_head.weight]), "trunk": norm(model.blocks.parameters()),
            "head": norm(model.heads["conviction"].parameters()), "embeddings": norm([model.wte.weight])}


@pytest.mark.parametrize("tied", [True, False])
def test_train_lm_head_routes_gradient_through_the_target(tied):
    _, frozen = make(tied=tied, train_lm_head=False, detach_input=True)
    g = conviction_grads(frozen)
    assert g["lm_head"] == 0.0 and g["embeddings"] == 0.0 and g["head"] > 0
    _, trained = make(tied=tied, train_lm_head=True, detach_input=True)
    g = conviction_grads(trained)
    assert g["lm_head"] > 0 and g["head"] > 0


def test_untied_lm_head_never_learns_from_conviction_unless_asked():
    _, model = make(tied=False, train_lm_head=False, detach_input=False)
    g = conviction_grads(model)
    assert g["lm_head"] == 0.0 and g["trunk"] > 0  # the trunk still learns through the head's input


def test_detach_input_keeps_the_trunk_out_of_it():
    _, detached = make(detach_input=True)
    assert conviction_grads(detached)["trunk"] == 0.0
    _, attached = make(detach_input=False)
    assert conviction_grads(attached)["trunk"] > 0
    # with train_lm_head, detach_input still keeps h (and so the trunk) out of the target
    _, both = make(detach_input=True, train_lm_head=True, tied=False)
    g = conviction_grads(both)
    assert g["trunk"] == 0.0 and g["lm_head"] > 0


def test_conviction_head_appears_in_the_gradient_groups():
    _, model = make()
    assert "conviction_head" in model.module_groups()
    cfg, _ = make()
    cfg.conviction.enabled = False
    assert "conviction" not in build_model(cfg, 64).heads


def test_rank_statistics_against_hand_computations():
    # positives {0.9, 0.4}, negatives {0.5, 0.1}: pairs won 1 + 1 + 0 + 1 = 3 of 4
    assert auroc(np.array([0.9, 0.4, 0.5, 0.1]), np.array([1, 1, 0, 0])) == pytest.approx(0.75)
    assert auroc(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)  # a tie counts half
    assert math.isnan(auroc(np.array([0.1, 0.2]), np.array([1, 1])))
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([10, 20, 30, 40.0])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([4, 3, 2, 1.0])) == pytest.approx(-1.0)
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([1, 3, 2, 4.0])) == pytest.approx(0.8)
    assert spearman(np.array([1, 1, 2.0]), np.array([1, 2, 3.0])) == pytest.approx(math.sqrt(3) / 2)  # tied: mean ranks
    assert math.isnan(spearman(np.ones(4), np.arange(4.0)))  # a constant side has no ranking
