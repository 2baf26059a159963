"""The GPT: every knob does what it says, and every variant is causal."""

import math

import pytest
import torch
from torch import nn

from engine.model import build_model
from runspec.config.load import config_from_dict
from runspec.config.schema import RunConfig
from zoo.ffn.module import GeluSigmoid, ReLU2, SoLU
from zoo.nn.positions import Rotary


def make(vocab: int = 64, **model) -> tuple[RunConfig, nn.Module]:
    """A tiny model from [model] keys, old-style ones (activation, d_ff...) included: they go
    through the config loader and its migration, as a user's file does."""
    cfg = config_from_dict({"model": {"n_layer": 2, "d_model": 32, "n_head": 4, "block_size": 16, **model}})
    torch.manual_seed(0)
    return cfg, build_model(cfg, vocab)


VARIANTS = [
    dict(pos="learned"), dict(pos="learned_per_layer"), dict(pos="rope"), dict(pos="none"),
    dict(pos="rope", qk_norm=True, norm="rmsnorm"), dict(pos="learned", qk_norm=True),
    dict(pos="rope", head_dim=12, n_head=3), dict(output_projection=True, output_projection_norm=True),
    dict(activation="solu", gated=True, bias=False, logit_softcap=10.0),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()))
def test_changing_a_future_token_never_changes_earlier_logits(variant):
    _, model = make(**variant)
    model.eval()
    x = torch.randint(0, 64, (2, 16))
    x2 = x.clone()
    x2[:, 9:] = (x2[:, 9:] + 7) % 64
    a, b = model(x).logits, model(x2).logits
    assert torch.allclose(a[:, :9], b[:, :9], atol=1e-5)
    assert not torch.allclose(a[:, 9:], b[:, 9:], atol=1e-3)  # and the change is seen afterwards


def test_rope_scores_depend_only_on_relative_position():
    rot = Rotary(head_dim=8, max_len=64, base=10000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(pq, pk):
        return (rot(q, pq) * rot(k, pk)).sum().item()

    assert score(3, 1) == pytest.approx(score(13, 11), abs=1e-5)
    assert score(5, 5) == pytest.approx(score(40, 40), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)


@pytest.mark.parametrize("variant", [dict(), dict(init="zero_out", tie_embeddings=False), dict(pos="rope", norm="rmsnorm")])
def test_loss_at_init_is_close_to_uniform(variant):
    _, model = make(vocab=256, **variant)
    x, y = torch.randint(0, 256, (8, 16)), torch.randint(0, 256, (8, 16))
    assert abs(model(x, y).loss.item() - math.log(256)) < 0.1


def test_a_tiny_model_overfits_one_batch():
    _, model = make(dropout=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randint(0, 64, (4, 16))
    y = torch.roll(x, -1, dims=1)
    for _ in range(150):
        loss = model(x, y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def n_params(**variant) -> int:
    return make(**variant)[1].num_params()


def test_width_and_depth_knobs_change_parameter_counts_exactly():
    cfg, model = make()
    d, L, V, T = 32, 2, 64, 16
    # per block: 2 LN (2d each) + qkv (3d*d + 3d) + proj (d*d + d) + mlp (d*4d + 4d + 4d*d + d)
    block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d + 4 * d * d + d)
    assert model.num_params() == V * d + T * d + L * block + 2 * d  # wte (tied) + wpe + blocks + ln_f
    assert n_params(n_layer=3) - n_params(n_layer=2) == block
    widen = 4 * (16 - 8)  # attention width grows by n_head * (16 - 8); qkv (3 x, with bias) and proj follow
    assert n_params(head_dim=16) - n_params() == L * (3 * d * widen + 3 * widen + widen * d)
    assert n_params(d_ff=64) < n_params()
    assert n_params(mlp_ratio=2.0) == n_params(d_ff=64)


def test_gated_adds_one_up_projection_per_block():
    d, ff = 32, 128
    assert n_params(gated=True) - n_params() == 2 * (d * ff + ff)
    _, model = make(gated=True, activation="silu")
    assert model.blocks[0].mlp.gate is not None and isinstance(model.blocks[0].mlp.act, nn.SiLU)


def test_bias_false_removes_every_bias():
    _, model = make(bias=False)
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    _, model = make(bias=True)
    assert any(name.endswith("qkv.bias") for name, _ in model.named_parameters())


def test_norm_kinds_and_qk_norm():
    _, model = make(norm="rmsnorm", qk_norm=True)
    assert isinstance(model.ln_f, nn.RMSNorm) and isinstance(model.blocks[0].attn.q_norm, nn.RMSNorm)
    _, model = make()
    assert isinstance(model.ln_f, nn.LayerNorm) and model.blocks[0].attn.q_norm is None


def test_position_schemes_own_the_right_tables():
    assert len(make(pos="learned")[1].wpe.tables) == 1
    assert len(make(pos="learned_per_layer", n_layer=3)[1].wpe.tables) == 3
    _, rope = make(pos="rope")
    assert rope.wpe is None and rope.blocks[0].attn.rotary is not None
    assert make(pos="none")[1].wpe is None


@pytest.mark.parametrize("name, cls", [("relu", nn.ReLU), ("relu2", ReLU2), ("gelu", nn.GELU),
                                       ("gelu_tanh", nn.GELU), ("gelu_sigmoid", GeluSigmoid),
                                       ("silu", nn.SiLU), ("solu", SoLU)])
def test_activation_is_swappable_by_name(name, cls):
    _, model = make(activation=name)
    assert isinstance(model.blocks[0].mlp.act, cls)


def test_activation_definitions():
    x = torch.linspace(-3, 3, 11)
    assert torch.allclose(ReLU2()(x), torch.relu(x) ** 2)
    assert torch.allclose(GeluSigmoid()(x), x * torch.sigmoid(1.702 * x))
    solu = SoLU(11, bias=True)
    assert torch.allclose(solu(x), torch.nn.functional.layer_norm(x * torch.softmax(x, -1), (11,)), atol=1e-6)


def test_tied_embeddings_share_one_tensor_and_untied_do_not():
    _, tied = make()
    _, untied = make(tie_embeddings=False)
    assert tied.lm_head.weight is tied.wte.weight
    assert untied.lm_head.weight is not untied.wte.weight
    assert untied.num_params() - tied.num_params() == 64 * 32
    assert "lm_head" in untied.module_groups() and "lm_head" not in tied.module_groups()


def test_output_projection_sits_between_hidden_and_lm_head():
    _, model = make(output_projection=True, output_projection_norm=True)
    x = torch.randint(0, 64, (1, 8))
    out = model(x)
    expected = model.output_norm(model.output_projection(out.hidden))
    assert torch.allclose(out.lm_input, expected) and "output_projection" in model.module_groups()
    assert n_params(output_projection=True) - n_params() == 32 * 32 + 32


def test_zero_out_init_makes_every_block_start_as_identity():
    _, model = make(init="zero_out")
    for block in model.blocks:
        assert block.attn.proj.weight.abs().sum() == 0 and block.mlp.down.weight.abs().sum() == 0
    _, scaled = make(init="scaled", n_layer=8)
    std = scaled.blocks[0].mlp.down.weight.std().item()
    assert std == pytest.approx(0.02 / math.sqrt(16), rel=0.15)


def test_residual_scale_and_softcap_act_on_the_output():
    _, capped = make(logit_softcap=0.5)
    assert capped(torch.randint(0, 64, (1, 8))).logits.abs().max() <= 0.5
    _, a = make(residual_scale=1.0)
    _, b = make(residual_scale=0.5)
    x = torch.randint(0, 64, (1, 8))
    assert not torch.allclose(a(x).logits, b(x).logits)


def test_dropout_is_active_in_training_only():
    _, model = make(dropout=0.5)
    x = torch.randint(0, 64, (2, 16))
    model.train()
    assert not torch.allclose(model(x).logits, model(x).logits)
    model.eval()
    assert torch.allclose(model(x).logits, model(x).logits)


@pytest.mark.parametrize("pos", ["learned", "rope", "learned_per_layer"])
def test_kv_cache_gives_the_same_logits_as_a_full_forward(pos):
    _, model = make(pos=pos)
    model.eval()
    x = torch.randint(0, 64, (1, 12))
    full = model(x).logits
    cache = model.new_cache()
    first = model(x[:, :5], cache=cache).logits
    rest = [model(x[:, i:i + 1], cache=cache).logits for i in range(5, 12)]
    assert torch.allclose(torch.cat([first, *rest], dim=1), full, atol=1e-5)
    cache = model.new_cache()  # several new tokens after a cached prefix
    model(x[:, :4], cache=cache)
    assert torch.allclose(model(x[:, 4:], cache=cache).logits, full[:, 4:], atol=1e-5)
