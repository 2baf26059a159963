"""The correctness suite across segments: memories (Transformer-XL, compressive) and the
hourglass, each checked against its paper's identities on CPU in fp32. Every memory and shape
kind is also in test_zoo's COMBOS (causality within a window, decoding, init loss, overfitting,
parameter counts and FLOPs); here is what only shows over several segments."""

from __future__ import annotations

import pytest
import torch

from engine.model import build_model
from runspec.config.load import config_from_dict
from runspec.config.schema import ConfigError
from zoo.registry import FAMILIES

V, T = 64, 8
BASE = {"n_layer": 2, "d_model": 32, "n_head": 4, "block_size": T, "pos": "rope"}
XL = {"kind": "xl", "mem_len": 3 * T}
COMPRESSIVE = {"kind": "compressive", "mem_len": T, "cmem_len": 4, "rate": 2}

MEMORIES = {
    "xl": {"memory": XL},
    "xl/xl-relative": {"memory": XL, "pos": "xl_relative"},
    "xl+diff": {"memory": XL, "attention": "diff"},
    "xl+dint": {"memory": XL, "attention": "dint"},
    "xl+mla": {"memory": XL, "attention": "mla"},
    "xl+moe": {"memory": XL, "ffn": {"kind": "moe", "experts": 3, "top_k": 2}},
    "xl+ngpt": {"memory": XL, "block": "ngpt", "tie_embeddings": False},
    "xl/sliding": {"memory": XL, "attention": {"kind": "mha", "pattern": "sliding", "window": 5}},
    "compressive/conv": {"memory": COMPRESSIVE},
    "compressive/mean": {"memory": {**COMPRESSIVE, "compress": "mean"}},
    "compressive+gqa/xl-relative": {"memory": COMPRESSIVE, "attention": {"kind": "gqa", "kv_heads": 2},
                                    "pos": "xl_relative"},
}


def build(extra: dict, seed: int = 0, **model):
    cfg = config_from_dict({"model": {**BASE, **extra, **model}})
    torch.manual_seed(seed)
    m = build_model(cfg, V)
    m.eval()
    return cfg, m


def by_segments(model, x: torch.Tensor, memory=None) -> torch.Tensor:
    """Logits of a stream read segment by segment with the memory carried (XL's evaluation)."""
    memory = memory if memory is not None else model.new_memory(training=False)
    return torch.cat([model(x[:, i: i + T], memory=memory).logits for i in range(0, x.size(1), T)], dim=1)


def test_memory_and_shape_kinds_are_registered_families():
    assert list(FAMILIES["memory"]) == ["none", "compressive", "xl"]
    assert list(FAMILIES["shape"]) == ["stack", "hourglass"]


@pytest.mark.parametrize("name", [n for n in MEMORIES if n.startswith("xl")])
def test_xl_with_a_memory_over_the_whole_split_equals_one_full_pass(name):
    """With causal attention and relative positions, reading a split in segments with a memory
    that covers every earlier position is one causal pass over all of it (RESEARCH §13)."""
    _, model = build(MEMORIES[name])
    x = torch.randint(0, V, (2, 4 * T))  # four segments; the memory (3 segments) covers every earlier one
    assert torch.allclose(by_segments(model, x), model(x).logits, atol=1e-4)


def test_xl_with_no_memory_is_the_plain_model_with_the_same_positions():
    _, xl = build({"memory": {"kind": "xl", "mem_len": 0}})
    _, plain = build({})
    assert [n for n, _ in xl.named_parameters()] == [n for n, _ in plain.named_parameters()]
    x = torch.randint(0, V, (2, 3 * T))
    alone = torch.cat([plain(x[:, i: i + T]).logits for i in range(0, 3 * T, T)], dim=1)
    assert torch.allclose(by_segments(xl, x), alone, atol=1e-6)


@pytest.mark.parametrize("name", MEMORIES)
def test_a_token_in_segment_k_never_changes_an_earlier_output_and_the_memory_carries_it(name):
    _, model = build(MEMORIES[name])
    x = torch.randint(0, V, (2, 4 * T))
    base = by_segments(model, x)
    for j in (T + 3, 2 * T, 3 * T + 5):  # in segments 1, 2, 3
        x2 = x.clone()
        x2[:, j] = (x2[:, j] + 7) % V
        changed = by_segments(model, x2)
        assert torch.allclose(base[:, :j], changed[:, :j], atol=1e-5), f"an output before {j} saw it"
        later = (j // T + 1) * T  # the next segment sees it only through the memory
        if later < 4 * T:
            assert not torch.allclose(base[:, later:], changed[:, later:], atol=1e-4), "the memory lost it"


@pytest.mark.parametrize("name", MEMORIES)
def test_decoding_token_by_token_equals_reading_the_segments_with_the_memory(name):
    """A prompt longer than a segment goes in segment by segment, then tokens one at a time
    across segment boundaries: the logits are those of the segment pass."""
    cfg, model = build(MEMORIES[name])
    x = torch.randint(0, V, (1, 3 * T + 3))
    expected = by_segments(model, x)
    cache = model.new_cache()
    first = model(x[:, : T + 5], cache=cache)  # one segment and a part of the next
    steps = [model(x[:, i: i + 1], cache=cache).logits for i in range(T + 5, x.size(1))]
    got = torch.cat([first.logits, *steps], dim=1)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()


def test_compressive_memory_compresses_what_leaves_and_its_loss_trains_only_the_compression():
    cfg = config_from_dict({"model": {**BASE, "memory": COMPRESSIVE}})
    torch.manual_seed(0)
    model = build_model(cfg, V)
    memory = model.new_memory(training=True)
    x = torch.randint(0, V, (2, 3 * T + 1))
    out = None
    for i in range(0, 3 * T, T):
        out = model(x[:, i: i + T], x[:, i + 1: i + T + 1], memory=memory)
    state = memory[0]
    assert state.mem.shape == (2, T, 32) and state.cmem.shape == (2, 4, 32)  # 2 segments left: 2 x 8 / 2, kept 4
    assert "compress" in out.losses and out.weights["compress"] == 1.0
    model.zero_grad()
    out.losses["compress"].backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all(n.startswith("memory.") for n in grads), sorted(grads)  # the attention's weights held fixed
    model.zero_grad()
    out.losses["ce"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for n, p in model.named_parameters() if n.startswith("memory."))


def test_compressive_mean_pooling_is_the_mean_of_each_group():
    _, model = build({"memory": {**COMPRESSIVE, "compress": "mean"}})
    old = torch.randn(2, 6, 32)
    assert torch.allclose(model.memory[0].compress(old), old.view(2, 3, 2, 32).mean(2))


HOURGLASS = {
    "1-2-1": {"n_layer": 3, "shape": {"kind": "hourglass", "shorten": [1, 2, 1]}},
    "1-3-1/linear": {"n_layer": 3, "shape": {"kind": "hourglass", "shorten": [1, 3, 1], "pool": "linear"}},
    "1-2-4-2-1": {"n_layer": 5, "shape": {"kind": "hourglass", "shorten": [1, 2, 4, 2, 1]}},
    "1-2-1/xl-relative": {"n_layer": 4, "pos": "xl_relative",
                          "shape": {"kind": "hourglass", "shorten": [1, 2, 1], "layers": [1, 2, 1]}},
}


def test_an_hourglass_with_every_factor_1_is_the_plain_stack():
    _, hourglass = build({"n_layer": 4, "shape": {"kind": "hourglass", "shorten": [1, 1, 1], "layers": [1, 2, 1]}})
    _, plain = build({"n_layer": 4})
    x = torch.randint(0, V, (2, T))
    assert torch.equal(hourglass(x).logits, plain(x).logits)


@pytest.mark.parametrize("name", HOURGLASS)
def test_the_hourglass_never_sees_the_future_and_decodes_like_its_full_pass(name):
    cfg, model = build(HOURGLASS[name], block_size=24)
    x = torch.randint(0, V, (2, 23))  # not a multiple of the factors
    full = model(x).logits
    for j in (1, 2, 5, 11, 22):  # the first and last positions of groups, and inside them
        x2 = x.clone()
        x2[:, j] = (x2[:, j] + 5) % V
        other = model(x2).logits
        assert torch.allclose(full[:, :j], other[:, :j], atol=1e-5), f"an output before {j} saw it"
        assert not torch.allclose(full[:, j], other[:, j], atol=1e-4)
    cache = model.new_cache()
    first = model(x[:, :7], cache=cache)
    steps = [model(x[:, i: i + 1], cache=cache).logits for i in range(7, 23)]
    assert torch.allclose(torch.cat([first.logits, *steps], dim=1), full, atol=1e-5)


@pytest.mark.parametrize("keys, says", [
    ({"memory": "xl", "pos": "learned"}, "[model] pos: [model.memory] kind = 'xl' needs relative positions"),
    ({"memory": {"kind": "compressive", "mem_len": 6, "rate": 4}}, "[model.memory] mem_len: found 6"),
    ({"memory": {"kind": "compressive", "rate": 3}}, "[model.memory] mem_len: found 128, must be a positive multiple"),
    ({"memory": "compressive", "attention": "diff"}, "the reconstruction loss compares one attention map"),
    ({"pos": "xl_relative", "attention": "mla"}, "[model] pos: xl_relative adds its distance term"),
    ({"shape": {"kind": "hourglass", "shorten": [1, 2]}}, "[model.shape] shorten: found [1, 2]"),
    ({"shape": {"kind": "hourglass", "shorten": [1, 2, 3, 2, 1]}}, "must be a multiple of the one outside it"),
    ({"shape": {"kind": "hourglass", "layers": [1, 1, 1]}}, "must add up to n_layer (2)"),
    ({"shape": "hourglass", "memory": "xl"}, "do not compose"),
])
def test_combinations_that_cannot_work_are_one_line_errors(keys, says):
    with pytest.raises(ConfigError) as e:
        config_from_dict({"model": {**BASE, **keys}})
    assert says in str(e.value) and "\n" not in str(e.value)


def test_memory_and_hourglass_refuse_growth_and_t12_in_one_line():
    with pytest.raises(ConfigError, match="growth needs \\[model.memory\\] kind = 'none'"):
        config_from_dict({"model": {**BASE, "memory": "xl"}, "stage": [{"at_step": 5, "grow": {"n_layer": 4}}]})
    with pytest.raises(ConfigError, match="an hourglass's middle layers are shorter"):
        config_from_dict({"model": {**BASE, "n_layer": 3, "shape": "hourglass"}, "aux": {"layers": [1]}})
