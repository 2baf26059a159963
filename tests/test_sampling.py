"""The sampler's settings, each checked against its definition (engine.sampling's docstring:
llama.cpp's penalties, logit bias, min_keep), on hand-made vectors and on a real GPT."""

from __future__ import annotations

import math

import pytest
import torch

from engine.generate import Context, sample_tokens
from engine.grammar import Constraint, compile_grammar, lltokenizer
from engine.model.gpt import build_model
from engine.sampling import Penalties, Sampling, bias_vector, filter_probs
from runspec.config.load import config_from_dict
from runspec.data.tokenizers import get_tokenizer

V = 256
BLOCK = 16


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = config_from_dict({"model": {"n_layer": 2, "d_model": 32, "n_head": 2, "block_size": BLOCK}})
    return build_model(cfg, V).eval()


def test_penalties_follow_llama_cpps_definition():
    s = Sampling(repeat_penalty=2.0, repeat_last_n=3, frequency_penalty=0.5, presence_penalty=0.25)
    p = Penalties(s, vocab=4, context=100, device=torch.device("cpu"))
    for t in (3, 0, 0, 1):  # the window holds the last 3: 0, 0, 1 (token 3 has left it)
        p.push(t)
    out = p.apply(torch.tensor([2.0, -1.0, 0.5, 3.0]))
    # seen twice: 2 / 2 - 2 * 0.5 - 0.25; seen once: -1 * 2 - 0.5 - 0.25; unseen: unchanged
    assert out.tolist() == pytest.approx([-0.25, -2.75, 0.5, 3.0])


def test_penalize_nl_false_exempts_the_newline():
    s = Sampling(repeat_penalty=2.0, penalize_nl=False)
    p = Penalties(s, vocab=4, context=100, device=torch.device("cpu"), newline=2)
    for t in (1, 2):
        p.push(t)
    assert p.apply(torch.tensor([1.0, 1.0, 1.0, 1.0])).tolist() == [1.0, 0.5, 1.0, 1.0]


def test_min_keep_holds_tokens_through_top_p_and_min_p():
    probs = torch.tensor([0.9, 0.05, 0.03, 0.02])
    assert (filter_probs(probs, top_p=0.5) > 0).sum() == 1
    assert (filter_probs(probs, top_p=0.5, min_keep=3) > 0).sum() == 3
    assert (filter_probs(probs, min_p=0.5, min_keep=2) > 0).sum() == 2
    assert filter_probs(probs, top_p=0.5, min_keep=3).sum() == pytest.approx(1.0)


def test_logit_bias_lists_texts_and_bans():
    tok = get_tokenizer("bytes")
    got = bias_vector([["ab", 1.5], [99, False], [97, 1.0]], tok.encode, V)
    assert got == {97: 2.5, 98: 1.5, 99: -math.inf}
    with pytest.raises(ValueError, match="300"):
        bias_vector([[300, 1.0]], tok.encode, V)
    with pytest.raises(ValueError, match="bias must be a number"):
        bias_vector([[1, "high"]], tok.encode, V)


def test_a_banned_token_is_never_drawn_and_ignore_eos_bans_the_separator(model):
    g = torch.Generator().manual_seed(0)
    banned = {ord("e"), 0}
    s = Sampling(max_tokens=300, temperature=2.0, top_k=0, ignore_eos=True)
    got = [t.id for t in sample_tokens(model, [1, 2, 3], s, g, V, eot=0, bias={ord("e"): -math.inf})]
    assert len(got) == 300 and not set(got) & banned
    # the same draw without the bias does meet "e" and the separator: the ban is what kept them out
    free = [t.id for t in sample_tokens(model, [1, 2, 3], Sampling(max_tokens=3000, temperature=2.0, top_k=0),
                                        torch.Generator().manual_seed(0), V)]
    assert set(free) & banned


def test_a_huge_presence_penalty_makes_greedy_decoding_never_repeat(model):
    s = Sampling(max_tokens=40, temperature=0, presence_penalty=1e4, repeat_last_n=64)
    ids = [t.id for t in sample_tokens(model, [5], s, vocab_limit=V)]
    assert len(set(ids)) == 40 and 5 not in ids  # the prompt is in the window too
    window = Sampling(max_tokens=40, temperature=0, presence_penalty=1e4, repeat_last_n=8)
    ids = [t.id for t in sample_tokens(model, [5], window, vocab_limit=V)]
    assert all(len(set(ids[i:i + 8])) == 8 for i in range(len(ids) - 8))  # distinct within any 8
    plain = [t.id for t in sample_tokens(model, [5], Sampling(max_tokens=40, temperature=0), vocab_limit=V)]
    assert len(set(plain)) < 40  # an untrained model's greedy path loops


def test_the_context_records_what_the_window_cut(model):
    ctx = Context()
    list(sample_tokens(model, list(range(1, 41)), Sampling(max_tokens=2, seed=0), vocab_limit=V, context=ctx))
    assert ctx.prompt_tokens == 40 and ctx.dropped == 40 - BLOCK and ctx.truncated
    short = Context()
    list(sample_tokens(model, [1, 2], Sampling(max_tokens=3), vocab_limit=V, context=short))
    assert not short.truncated and short.cached == 2 + 2  # the last token drawn is not in the cache yet
    with pytest.raises(ValueError, match="n_keep"):
        list(sample_tokens(model, list(range(1, 30)), Sampling(max_tokens=1, n_keep=-1), vocab_limit=V))


def test_echo_scores_the_prompt_as_the_model_does(model):
    ctx = Context()
    prompt = [10, 20, 30, 40]
    list(sample_tokens(model, prompt, Sampling(max_tokens=0, echo=True, n_probs=2), vocab_limit=V, context=ctx))
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([prompt])).logits[0].float(), -1)
    assert ctx.prompt_scores[0] == (None, [])
    for pos in range(1, 4):
        lp, top = ctx.prompt_scores[pos]
        assert lp == pytest.approx(float(logp[pos - 1, prompt[pos]]), abs=1e-5) and len(top) == 2


def test_a_grammar_allows_only_its_language():
    tok = get_tokenizer("bytes")
    lt = lltokenizer(tok)
    c = Constraint(lt, compile_grammar("gbnf", 'root ::= "ab"', lt), V, torch.device("cpu"))
    assert c.allowed().nonzero().flatten().tolist() == [ord("a")]
    c.accept(ord("a"))
    assert c.allowed().nonzero().flatten().tolist() == [ord("b")]
    c.accept(ord("b"))
    assert c.allowed().nonzero().flatten().tolist() == [tok.eot]
    with pytest.raises(ValueError, match="grammar"):
        compile_grammar("gbnf", "root ::= missing", lt)


def test_sampling_checks_name_the_bad_setting():
    for req, named in (({"repeat_penalty": -1}, "repeat_penalty"), ({"repeat_last_n": -3}, "repeat_last_n"),
                       ({"min_keep": -1}, "min_keep"), ({"ignore_eos": "yes"}, "ignore_eos"),
                       ({"logit_bias": {"1": 2}}, "logit_bias")):
        with pytest.raises(ValueError, match=named):
            Sampling.from_request(req)
