"""The model zoo's correctness suite: every registered kind and every combination of kinds is
built and checked on CPU in fp32 (a kind added as a folder in zoo/ is covered at once):
causality of every output, cached decoding against the full pass, loss at init, overfitting a
batch, relative positions, parameter counts and FLOPs against the torch-free specs, one role per
parameter; then the identities of each kind from its paper."""

from __future__ import annotations

import itertools
import math
import pathlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.model import build_model
from engine.model.losses import stablemax, stablemax_s
from engine.model.roles import ROLES, param_table
from engine.optim import build_optimizers, orthogonalize_grads
from runspec.config.load import config_from_dict
from runspec.config.schema import ConfigError
from runspec.config.shape import count_params, flops_per_token
from zoo.attention.module import allowed
from zoo.ffn.dense.module import MLP
from zoo.ffn.module import SoLU
from zoo.modules import module_for
from zoo.registry import FAMILIES

V = 64
BASE = {"n_layer": 2, "d_model": 32, "n_head": 4, "block_size": 16, "pos": "rope"}


def model_keys(attention="mha", ffn="dense", block="prenorm", **extra) -> dict:
    keys = {**BASE, "attention": attention, "ffn": ffn, "block": block}
    if (block if isinstance(block, str) else block["kind"]) == "ngpt":
        keys["tie_embeddings"] = False
    if (ffn if isinstance(ffn, str) else ffn["kind"]) == "moe" and isinstance(ffn, str):
        keys["ffn"] = {"kind": "moe", "experts": 3, "top_k": 2}
    return {**keys, **extra}


def combos() -> dict[str, dict]:
    """Every attention x ffn x block, then the options each kind has."""
    out = {f"{a}+{f}+{b}": model_keys(a, f, b) for a, f, b in itertools.product(
        FAMILIES["attention"], FAMILIES["ffn"], FAMILIES["block"])}
    for a in FAMILIES["attention"]:
        for name, pattern in (("sliding", {"pattern": "sliding", "window": 4}),
                              ("strided", {"pattern": "strided", "window": 3, "stride": 4}),
                              ("dilated", {"pattern": "dilated", "window": 3, "stride": 2})):
            out[f"{a}/{name}"] = model_keys({"kind": a, **pattern})
    out.update({
        "mla/query-compression": model_keys({"kind": "mla", "q_latent_dim": 24}),
        "mla/absorbed": model_keys({"kind": "mla", "absorb": True}),
        "mla/no-rope-part": model_keys({"kind": "mla"}, pos="learned"),
        "mla/diff-map": model_keys({"kind": "mla", "map": "diff"}),
        "mla/dint-map+ngpt": model_keys({"kind": "mla", "map": "dint"}, block="ngpt"),
        "dint+ngpt": model_keys("dint", block="ngpt"),
        "diff/v2": model_keys({"kind": "diff", "version": 2}),
        "diff/constant-lambda-no-subln": model_keys({"kind": "diff", "lambda_schedule": "constant", "subln": False}),
        "mha/low-rank": model_keys({"kind": "mha", "rank": 8}),
        "mha/separate-qkv+qk-norm": model_keys({"kind": "mha", "fused_qkv": False}, qk_norm=True, norm="rmsnorm"),
        "dense/low-rank-swiglu": model_keys("mha", {"kind": "dense", "rank": 8, "gated": True, "activation": "silu"}),
        "dense/solu": model_keys("mha", {"kind": "dense", "activation": "solu"}),
        "moe/capacity-gated": model_keys("mha", {"kind": "moe", "experts": 4, "top_k": 1, "capacity_factor": 1.0,
                                                 "gated": True, "activation": "silu"}),
        "ngpt/simple": model_keys("mha", "dense", {"kind": "ngpt", "variant": "simple"}),
        "ngpt+moe-gated": model_keys("mha", {"kind": "moe", "experts": 3, "top_k": 2, "gated": True,
                                             "activation": "silu"}, "ngpt"),
        # memories across segments and shapes along the sequence (their own identities: test_zoo_memory.py)
        "xl": model_keys(memory={"kind": "xl", "mem_len": 16}),
        "xl/xl-relative": model_keys(memory={"kind": "xl", "mem_len": 16}, pos="xl_relative"),
        "xl/xl-relative+gqa": model_keys({"kind": "gqa", "kv_heads": 2}, memory={"kind": "xl", "mem_len": 16},
                                         pos="xl_relative"),
        "xl+diff": model_keys("diff", memory={"kind": "xl", "mem_len": 16}),
        "xl+moe": model_keys("mha", "moe", memory={"kind": "xl", "mem_len": 16}),
        "xl+ngpt": model_keys("mha", "dense", "ngpt", memory={"kind": "xl", "mem_len": 16}),
        "compressive/conv": model_keys(memory={"kind": "compressive", "mem_len": 8, "cmem_len": 4, "rate": 4}),
        "compressive/mean": model_keys(memory={"kind": "compressive", "mem_len": 8, "cmem_len": 4, "rate": 2,
                                               "compress": "mean"}),
        "hourglass": model_keys(n_layer=3, shape={"kind": "hourglass", "shorten": [1, 2, 1]}),
        "hourglass/3-linear": model_keys(n_layer=3, shape={"kind": "hourglass", "shorten": [1, 3, 1], "pool": "linear"}),
        "hourglass/nested+mla": model_keys("mla", n_layer=5, shape={"kind": "hourglass", "shorten": [1, 2, 4, 2, 1]}),
        "stablemax": model_keys(output="stablemax"),
        "learned-positions+bias-free": model_keys(pos="learned", bias=False),
    })
    return out


COMBOS = combos()


def build(keys: dict, conviction: bool = True, vocab: int = V, seed: int = 0):
    cfg = config_from_dict({"model": dict(keys), "conviction": {"enabled": conviction}})
    torch.manual_seed(seed)
    return cfg, build_model(cfg, vocab)


def test_every_kind_is_one_folder_with_its_spec_and_its_module():
    import zoo

    root = pathlib.Path(zoo.__file__).parent
    for family, kinds in FAMILIES.items():
        folders = sorted(p.name for p in (root / family).iterdir() if (p / "spec.py").exists())
        assert folders == sorted(kinds), family
        for kind, spec in kinds.items():
            assert spec.__module__ == f"zoo.{family}.{kind}.spec" and spec.kind == kind
            assert module_for(spec).__module__ == f"zoo.{family}.{kind}.module"


def test_every_kind_has_a_module_and_every_combination_is_here():
    for family in FAMILIES.values():
        for spec in family.values():
            assert issubclass(module_for(spec), nn.Module), spec
    n = len(FAMILIES["attention"]) * len(FAMILIES["ffn"]) * len(FAMILIES["block"])
    assert sum("+" in k and "/" not in k for k in COMBOS) >= n


@pytest.mark.parametrize("name", COMBOS)
def test_no_output_ever_sees_the_future(name):
    """Changing token j never changes any output (logits, conviction) at positions < j."""
    _, model = build(COMBOS[name])
    model.eval()
    x = torch.randint(0, V, (2, 16))
    for j in (1, 7, 15):
        x2 = x.clone()
        x2[:, j:] = (x2[:, j:] + 11) % V
        a, b = model(x), model(x2)
        assert torch.allclose(a.logits[:, :j], b.logits[:, :j], atol=1e-5), f"logits see position {j}"
        assert torch.allclose(a.conviction[:, :j], b.conviction[:, :j], atol=1e-5)
        assert not torch.allclose(a.logits[:, j:], b.logits[:, j:], atol=1e-4)  # and the change is seen


@pytest.mark.parametrize("name", COMBOS)
def test_cached_decoding_equals_the_full_pass(name):
    cfg, model = build(COMBOS[name])
    model.eval()
    x = torch.randint(0, V, (2, 14))
    full = model(x)
    cache = model.new_cache()
    first = model(x[:, :5], cache=cache)
    steps = [model(x[:, i:i + 1], cache=cache) for i in range(5, 14)]
    logits = torch.cat([first.logits, *(s.logits for s in steps)], dim=1)
    assert torch.allclose(logits, full.logits, atol=1e-5), (logits - full.logits).abs().max()
    conviction = torch.cat([first.conviction, *(s.conviction for s in steps)], dim=1)
    assert torch.allclose(conviction, full.conviction, atol=1e-5)
    # the cache holds what the kind says it does per token (MLA: the latent and the RoPE key)
    m = cfg.model
    assert cache[0].length == 14 and cache[0].numbers_per_token() == m.attention.cache_per_token(m)
    cache = model.new_cache()  # several new tokens after a cached prefix
    model(x[:, :4], cache=cache)
    assert torch.allclose(model(x[:, 4:], cache=cache).logits, full.logits[:, 4:], atol=1e-5)


@pytest.mark.parametrize("name", COMBOS)
def test_loss_at_init_is_within_3_percent_of_ln_v(name):
    _, model = build(COMBOS[name], vocab=256)
    torch.manual_seed(1)
    x, y = torch.randint(0, 256, (8, 16)), torch.randint(0, 256, (8, 16))
    ce = model(x, y).losses["ce"].item()
    assert abs(ce - math.log(256)) / math.log(256) < 0.03, ce


@pytest.mark.parametrize("name", COMBOS)
def test_one_batch_can_be_overfit(name):
    cfg, model = build(COMBOS[name], conviction=False)
    cfg.optim.lr, cfg.optim.weight_decay = 2e-2, 0.0  # every kind there within 150 steps (1e-2: up to 230; 5e-2 diverges)
    opt = build_optimizers(model, cfg, "cpu")
    torch.manual_seed(2)
    x = torch.randint(0, V, (4, 16))
    y = torch.roll(x, -1, dims=1)
    for _ in range(400):
        loss = model(x, y).losses["ce"]
        if loss.item() < 0.1:
            break
        opt.zero_grad()
        loss.backward()
        for o in opt.optimizers:
            o.step()
        model.after_step()
    assert loss.item() < 0.1, loss.item()


@pytest.mark.parametrize("name", [n for n in COMBOS if "dint" not in n and COMBOS[n]["pos"] in ("rope", "xl_relative")
                                  and "hourglass" not in n])
def test_rope_outputs_depend_only_on_relative_positions(name):
    """With a sliding window the receptive field is bounded, so with purely relative positions
    (RoPE) the outputs of a sequence must not change when other tokens are put in front of it.
    (DINT's running mean counts positions from the start, so it is not shift-invariant.)"""
    keys = dict(COMBOS[name])
    attn = keys["attention"] if isinstance(keys["attention"], dict) else {"kind": keys["attention"]}
    keys["attention"] = {**attn, "pattern": "sliding", "window": 3, "stride": 0}
    keys["block_size"] = 32
    _, model = build(keys, conviction=False)
    model.eval()
    x = torch.randint(0, V, (1, 16))
    shifted = torch.cat([torch.randint(0, V, (1, 9)), x], dim=1)
    reach = 2 * (3 - 1)  # two layers, each sees 2 tokens back
    a, b = model(x).logits[:, reach:], model(shifted).logits[:, 9 + reach:]
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("name", COMBOS)
def test_parameter_count_and_roles_match_the_torch_free_spec(name):
    cfg, model = build(COMBOS[name])
    assert count_params(cfg.model, V, conviction=True)["total"] == model.num_params()
    table = param_table(model)
    assert len({id(p.param) for p in table}) == len(table) == len(list(model.parameters()))
    assert all(p.role in ROLES for p in table)


@pytest.mark.parametrize("name", ["mha+dense+prenorm", "mla+dense+prenorm", "diff+dense+prenorm",
                                  "dint+dense+prenorm", "mha+moe+prenorm", "mla/query-compression",
                                  "mha/low-rank", "mla/diff-map", "hourglass", "hourglass/nested+mla"])
def test_flops_per_token_match_a_flop_counter(name):
    """The spec's formula (6 x weights + 3 x attention scores, per token) against torch's own
    count of a forward and backward pass."""
    from torch.utils.flop_counter import FlopCounterMode

    keys = {**COMBOS[name], "block_size": 64}
    cfg, model = build(keys, conviction=False)
    x = torch.randint(0, V, (2, 64))
    # the math kernel: torch counts SDPA through it, but not through the fused CPU flash kernel
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(x, x).loss.backward()
    measured = counter.get_total_flops() / x.numel()
    expected = flops_per_token(cfg.model, V)
    assert measured == pytest.approx(expected, rel=0.12), (measured, expected)


# -- identities of each kind ------------------------------------------------------------------

def attention_of(keys: dict, layer: int = 0):
    _, model = build(keys, conviction=False)
    return model, model.blocks[layer].attn


def test_diff_lambda_vectors_at_zero_give_lambda_init_and_its_rows_sum_to_one_minus_lambda():
    model, attn = attention_of(model_keys("diff"), layer=1)
    for name in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"):
        nn.init.zeros_(getattr(attn.diff, name))
    x = torch.randn(1, 16, 32)
    lam = attn.diff.lam(x).item()
    assert lam == pytest.approx(0.8 - 0.6 * math.exp(-0.3 * 1))  # λ_init at depth 1: 0.356
    assert [round(0.8 - 0.6 * math.exp(-0.3 * d), 3) for d in range(4)] == [0.2, 0.356, 0.471, 0.556]
    nn.init.normal_(attn.diff.lambda_q1, 0, 0.3)
    lam = attn.diff.lam(x).squeeze(-1)
    rows = attn.maps(x).sum(-1)
    assert torch.allclose(rows, (1 - lam).expand_as(rows), atol=1e-5)


def test_diff_with_equal_maps_is_independent_of_lambda():
    """W_Q2 = W_Q1 and W_K2 = W_K1: output = (1 - λ_init) RMSNorm(A1 V) whatever λ."""
    model, attn = attention_of(model_keys("diff"))
    with torch.no_grad():
        H, D = attn.n_head, attn.head_dim
        w = attn.qkv.weight.view(3, H, D, -1)
        w[0, 1::2] = w[0, 0::2]  # query maps of each pair equal
        w[1, 1::2] = w[1, 0::2]
        b = attn.qkv.bias.view(3, H, D)
        b[0, 1::2], b[1, 1::2] = b[0, 0::2], b[1, 0::2]
    attn.eval()
    attn.diff.subln.eps = 1e-12  # RMSNorm(c·x) = RMSNorm(x) for c > 0, up to its eps
    x = torch.randn(2, 12, 32)
    outs = []
    for value in (0.0, 0.7, -0.4):
        nn.init.constant_(attn.diff.lambda_q1, value)
        assert attn.diff.lam(x).item() < 1  # (1 - λ) > 0: the sign survives the norm
        outs.append(attn(x))
    assert torch.allclose(outs[0], outs[1], atol=1e-5) and torch.allclose(outs[0], outs[2], atol=1e-5)
    q, k, v = attn._project(x, 0)
    a1v = torch.softmax((q[:, 0::2] @ k[:, 0::2].transpose(-1, -2)) / math.sqrt(D) +
                        torch.full((12, 12), float("-inf")).triu(1), dim=-1) @ v
    expected = attn.diff.subln(a1v) * (1 - attn.diff.lambda_init)
    assert torch.allclose(outs[0], attn.proj(expected.transpose(1, 2).reshape(2, 12, -1)), atol=1e-5)


def test_diff_has_the_parameters_of_the_baseline_with_twice_the_heads():
    _, mha = build(model_keys("mha"), conviction=False)
    _, diff = build(model_keys({"kind": "diff", "subln": False}), conviction=False)
    projections = lambda m: sum(p.numel() for n, p in m.named_parameters() if ".attn.qkv." in n or ".attn.proj." in n)  # noqa: E731
    assert projections(mha) == projections(diff)
    assert diff.num_params() - mha.num_params() == 2 * 4 * 8  # only the λ vectors (4 of head size, per layer)


@pytest.mark.parametrize("keys", [model_keys("dint"), model_keys({"kind": "dint", "pattern": "sliding", "window": 5})])
def test_dint_rows_sum_to_one_and_are_causal(keys):
    model, attn = attention_of(keys)
    nn.init.normal_(attn.diff.lambda_q1, 0, 0.5)
    a = attn.maps(torch.randn(2, 16, 32))
    assert torch.allclose(a.sum(-1), torch.ones(2, 2, 16), atol=1e-5)
    assert (a.triu(1).abs() < 1e-7).all()  # nothing above the diagonal: no future


def test_dint_with_lambda_zero_is_plain_softmax_attention():
    keys = model_keys({"kind": "dint", "lambda_schedule": "constant", "lambda_init": 0.0})
    model, attn = attention_of(keys)
    for name in ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"):
        nn.init.zeros_(getattr(attn.diff, name))
    x = torch.randn(1, 10, 32)
    q, k, _ = attn._project(x, 0)
    plain = attn.scores(q[:, 0::2], k[:, 0::2], 0, 1 / math.sqrt(attn.head_dim))
    assert torch.allclose(attn.maps(x), plain, atol=1e-6)


def test_ngpt_keeps_everything_on_the_unit_sphere():
    cfg, model = build(model_keys(block="ngpt"), conviction=False)
    x = torch.randint(0, V, (2, 16))
    cfg.optim.lr = 1e-2
    opt = build_optimizers(model, cfg, "cpu")
    assert all(g["weight_decay"] == 0 for g in opt.param_groups)  # no weight decay on any group
    loss = model(x, torch.roll(x, -1, 1)).loss
    loss.backward()
    for o in opt.optimizers:
        o.step()
    model.after_step()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and "router" not in name:
            dim = 0 if getattr(module, "is_residual_out", False) else 1
            assert torch.allclose(module.weight.norm(dim=dim), torch.ones(1), atol=1e-5), name
    assert torch.allclose(model.wte.weight.norm(dim=1), torch.ones(1), atol=1e-5)
    h = torch.nn.functional.normalize(model.wte(x), dim=-1)
    for block in model.blocks:
        h = block(h)
        assert torch.allclose(h.norm(dim=-1), torch.ones(1), atol=1e-5)  # ||h|| = 1 after every block


def test_ngpt_block_with_alpha_zero_is_the_identity():
    _, model = build(model_keys(block="ngpt"), conviction=False)
    block = model.blocks[0]
    nn.init.zeros_(block.alpha_a.p)
    nn.init.zeros_(block.alpha_m.p)
    h = torch.nn.functional.normalize(torch.randn(2, 8, 32), dim=-1)
    assert torch.allclose(block(h), h, atol=1e-6)


def dense_like_expert(cfg, moe, i: int = 0) -> MLP:
    """The dense MLP holding expert i's weights (and gate, for a gated MoE)."""
    dense = MLP(cfg.model, cfg.model.ffn)
    parts = ("up", "down") + (("gate",) if hasattr(dense, "gate") and dense.gate is not None else ())
    with torch.no_grad():
        for part in parts:
            getattr(dense, part).weight.copy_(getattr(moe, f"w_{part}")[i])
            getattr(dense, part).bias.copy_(getattr(moe, f"b_{part}")[i])
    return dense


def test_moe_with_one_expert_is_the_dense_mlp():
    keys = model_keys(ffn={"kind": "moe", "experts": 1, "top_k": 1, "gated": True, "activation": "silu"})
    cfg, model = build(keys, conviction=False)
    moe = model.blocks[0].mlp
    dense = dense_like_expert(cfg, moe)
    x = torch.randn(2, 8, 32)
    assert torch.allclose(moe(x), dense(x), atol=1e-6)


def test_moe_with_identical_experts_is_the_dense_mlp_and_a_zero_router_balances_exactly():
    keys = model_keys(ffn={"kind": "moe", "experts": 4, "top_k": 2})
    cfg, model = build(keys, conviction=False)
    moe = model.blocks[0].mlp
    with torch.no_grad():
        for p in (moe.w_up, moe.w_down, moe.b_up, moe.b_down):
            p.copy_(p[0:1].expand_as(p))
    dense = dense_like_expert(cfg, moe)
    x = torch.randn(2, 8, 32)
    assert torch.allclose(moe(x), dense(x), atol=1e-6)  # top-k weights sum to one
    nn.init.zeros_(moe.router.weight)  # uniform router: f_i = P_i = 1/E, so E·Σ f_i P_i = 1 exactly
    from zoo.nn.collect import Collector

    c = Collector(metrics=True)
    moe(x, c)
    assert c.losses()["moe_balance"].item() == pytest.approx(1.0, abs=1e-6)


def test_moe_capacity_drops_in_training_only_and_infinite_capacity_drops_nothing():
    from zoo.nn.collect import Collector

    def dropped(factor: float, training: bool) -> float:
        keys = model_keys(ffn={"kind": "moe", "experts": 4, "top_k": 1, "capacity_factor": factor})
        _, model = build(keys, conviction=False)
        moe = model.blocks[0].mlp
        nn.init.zeros_(moe.router.weight)
        with torch.no_grad():
            moe.router.weight[0] += 1.0  # a router that prefers expert 0 for positive inputs
        moe.train(training)
        c = Collector(metrics=True)
        moe(torch.rand(2, 16, 32), c)
        return c.metrics()["moe/dropped"].item()

    assert dropped(1.0, training=True) > 0.5  # expert 0 takes at most its share
    assert dropped(1.0, training=False) == 0.0
    assert dropped(1e9, training=True) == 0.0


def test_mla_naive_and_absorbed_paths_agree_and_cache_the_latent():
    cfg, model = build(model_keys({"kind": "mla", "latent_dim": 24, "rope_head_dim": 4}), conviction=False)
    attn = model.blocks[0].attn
    attn.eval()
    x = torch.randn(2, 12, 32)
    assert torch.allclose(attn(x, absorb=False), attn(x, absorb=True), atol=1e-5)
    cache = attn.new_cache()
    attn(x, cache=cache)
    assert cache.tensors["c"].shape == (2, 12, 24) and cache.tensors["k_r"].shape == (2, 12, 4)
    step_naive = attn(torch.randn(2, 1, 32), cache=cache, absorb=False)
    assert step_naive.shape == (2, 1, 32)
    mha = build(model_keys("mha"), conviction=False)[0].model.attention
    assert cfg.model.attention.cache_per_token(cfg.model) == 24 + 4 < mha.cache_per_token(cfg.model)  # 28 vs 64


@pytest.mark.parametrize("block", ["prenorm", "ngpt"])
def test_gqa_is_mha_whose_heads_share_keys_and_values_by_group(block):
    """Ainslie et al. 2023: GQA with G key/value heads is MHA whose key/value projections repeat
    each group's head for its n_head / G query heads; with G = n_head it is MHA itself."""
    for groups in (1, 2, 4):
        cfg, gqa = build(model_keys({"kind": "gqa", "kv_heads": groups}, block=block, n_head=4), conviction=False)
        _, mha = build(model_keys({"kind": "mha", "fused_qkv": False}, block=block, n_head=4), conviction=False)
        a, b = gqa.blocks[0].attn.eval(), mha.blocks[0].attn.eval()
        state = a.state_dict()
        hd, per = 8, 4 // groups
        for name in ("k.weight", "v.weight", "k.bias", "v.bias"):  # (G·hd, ...) -> (H·hd, ...): head i reads group i // per
            t = state[name].view(groups, 1, hd, -1)
            state[name] = t.expand(groups, per, hd, t.size(-1)).reshape(4 * hd, -1).squeeze(-1)
        b.load_state_dict(state)
        x = torch.randn(2, 12, 32)
        assert torch.allclose(a(x), b(x), atol=1e-5), groups
        cache = a.new_cache()
        a(x, cache=cache)
        assert cache.numbers_per_token() == 2 * groups * hd == cfg.model.attention.cache_per_token(cfg.model)


def test_gqa_refuses_groups_that_do_not_divide_the_heads():
    with pytest.raises(ConfigError, match=r"\[model.attention\] kv_heads.*divide \[model\] n_head \(4\)"):
        config_from_dict({"model": model_keys({"kind": "gqa", "kv_heads": 3})})


def test_orthograd_steps_orthogonal_to_the_weight_with_the_gradients_norm():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(16, 8))
    g = torch.randn(16, 8)
    w.grad = g.clone()
    orthogonalize_grads([w])
    cos = F.cosine_similarity(w.detach().reshape(-1), w.grad.reshape(-1), dim=0)
    assert abs(cos.item()) < 1e-6 and w.grad.norm().item() == pytest.approx(g.norm().item(), rel=1e-5)
    perp = torch.randn(16, 8)
    perp -= (perp * w.detach()).sum() / (w.detach() ** 2).sum() * w.detach()  # already orthogonal
    w.grad = perp.clone()
    orthogonalize_grads([w])
    assert torch.allclose(w.grad, perp, atol=1e-5)  # unchanged
    zero = nn.Parameter(torch.zeros(5))
    zero.grad = torch.randn(5)
    before = zero.grad.clone()
    orthogonalize_grads([zero])
    assert torch.equal(zero.grad, before)  # a zero tensor is left alone


def test_stablemax_is_a_distribution_with_s_of_zero_one():
    assert stablemax_s(torch.tensor(0.0)).item() == 1.0
    assert stablemax_s(torch.tensor(2.0)).item() == 3.0 and stablemax_s(torch.tensor(-1.0)).item() == 0.5
    p = stablemax(torch.randn(4, 50) * 30)
    assert torch.allclose(p.sum(-1), torch.ones(4)) and (p > 0).all()


def test_solu_identities():
    solu = SoLU(6, bias=True)
    assert torch.equal(solu.ln.weight, torch.ones(6))
    assert torch.allclose(solu(torch.zeros(6)), torch.zeros(6), atol=1e-6)  # SoLU(0) = 0
    c = torch.full((6,), 3.0)
    assert torch.allclose(c * torch.softmax(c, -1), torch.full((6,), 0.5))  # x = c·1 -> c/n per element
    out = solu(torch.randn(3, 6))
    assert torch.allclose(out.mean(-1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out.var(-1, unbiased=False), torch.ones(3), atol=1e-3)  # LN: mean 0, variance 1


def test_sparse_patterns_are_what_they_say():
    from zoo.attention.mha.spec import MHASpec

    pos = torch.arange(12)
    sliding = allowed(pos, pos, MHASpec(pattern="sliding", window=3))
    assert sliding[7].nonzero().flatten().tolist() == [5, 6, 7]
    strided = allowed(pos, pos, MHASpec(pattern="strided", window=2, stride=4))
    assert strided[9].nonzero().flatten().tolist() == [1, 5, 8, 9]
    dilated = allowed(pos, pos, MHASpec(pattern="dilated", window=3, stride=2))
    assert dilated[9].nonzero().flatten().tolist() == [5, 7, 9]


# -- configs and runs from before the kinds -----------------------------------------------------

OLD_NAMES = {"wte.weight", "wpe.tables.0.weight", "blocks.0.ln1.weight", "blocks.0.ln1.bias", "blocks.0.attn.qkv.weight",
             "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias", "blocks.0.ln2.weight",
             "blocks.0.ln2.bias", "blocks.0.mlp.up.weight", "blocks.0.mlp.up.bias", "blocks.0.mlp.gate.weight",
             "blocks.0.mlp.gate.bias", "blocks.0.mlp.down.weight", "blocks.0.mlp.down.bias", "ln_f.weight", "ln_f.bias",
             "conviction_head.proj.weight", "conviction_head.proj.bias", "lm_head.weight"}


def test_the_default_kinds_keep_the_parameter_names_older_checkpoints_have(tmp_path):
    """Only the heads moved (into the model.heads registry); a checkpoint written with the old
    names loads through checkpoint.load, in the model state and in FSDP's optimizer state."""
    from engine import checkpoint
    from engine.model.gpt import current_name

    cfg = config_from_dict({"model": {"n_layer": 1, "d_model": 32, "n_head": 2, "block_size": 16, "gated": True},
                            "conviction": {"enabled": True}, "aux": {"intermediate": True, "targets": 1}})
    model = build_model(cfg, V)
    old = {"heads.conviction.": "conviction_head.", "heads.aux.": "aux."}
    def older(name):
        return next((o + name[len(n):] for n, o in old.items() if name.startswith(n)), name)
    state = model.state_dict()
    assert {older(k) for k in state} - {k for k in map(older, state) if k.startswith("aux.")} == OLD_NAMES
    payload = {"model": {older(k): v for k, v in state.items()}, "step": 3,
               "optim": {"fsdp": {"state": {older(k): {"step": 1} for k in state},
                                  "param_groups": [{"params": [older(k) for k in state]}]}}}
    torch.save(payload, tmp_path / "old.pt")
    loaded = checkpoint.load(tmp_path / "old.pt")
    fresh = build_model(cfg, V, seed=1)
    fresh.load_state_dict(loaded["model"])  # strict: every name matches
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    assert set(loaded["optim"]["fsdp"]["state"]) == set(state) == set(loaded["optim"]["fsdp"]["param_groups"][0]["params"])
    assert current_name("blocks.0.attn.qkv.weight") == "blocks.0.attn.qkv.weight"


@pytest.mark.slow
def test_an_old_style_config_and_an_old_resolved_toml_still_train_and_resume(write_config, runs_dir):
    """[model] activation/gated/d_ff/mlp_ratio moved to [model.ffn]; files written before load as
    they are. A run dir whose resolved.toml has the old layout resumes and completes."""
    import tomli_w
    from conftest import cockpit

    from runspec.config.schema import tomllib
    from runspec.run.rundir import RunDir

    old = {"model": {"n_layer": 2, "d_model": 32, "n_head": 2, "block_size": 32, "activation": "silu", "gated": True,
                     "d_ff": 96}, "train": {"max_steps": 10, "batch_size": 4, "checkpoint_every": 5},
           "eval": {"every": 5, "batches": 2, "sample_tokens": 8}, "log": {"wandb": False}}
    path = runs_dir.parent / "old.toml"
    path.write_text(tomli_w.dumps(old))
    r = cockpit("--headless", "--runs-dir", str(runs_dir), "run", str(path))
    assert r.returncode == 0, r.stderr
    (rd,) = [RunDir(p) for p in runs_dir.iterdir() if not p.name.startswith(".")]
    resolved = tomllib.loads(rd.resolved.read_text())
    assert resolved["model"]["ffn"] == {"kind": "dense", "activation": "silu", "gated": True, "d_ff": 96,
                                        "mlp_ratio": 4.0, "rank": 0}
    # write it back the way runs made before this change have it, then resume
    model = resolved["model"]
    for key in ("activation", "gated", "d_ff", "mlp_ratio"):
        model[key] = model["ffn"].pop(key)
    for family in ("attention", "ffn", "block", "output"):
        model.pop(family)
    rd.resolved.write_text(tomli_w.dumps(resolved))
    r = cockpit("--headless", "--runs-dir", str(runs_dir), "resume", rd.id, "--max-steps", "15")
    assert r.returncode == 0, r.stderr
    assert rd.read_state().status == "completed" and rd.read_state().step == 15
