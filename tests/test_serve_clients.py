"""`cockpit serve` driven by the clients people use, through their public APIs only: the
official `openai` SDK, `llamacpp-client` (llama.cpp's native API) and langchain-openai, against
a real server on a loopback port. No JSON is built by hand here."""

from __future__ import annotations

import llamacpp_client
import openai
import pytest
from test_serve import Server

pytestmark = pytest.mark.slow

EOT = 0  # the byte tokenizer's separator


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from test_complete import train

    tmp = tmp_path_factory.mktemp("clients")
    rd = train(tmp, "conv", True)
    s = Server(tmp / "runs", rd.id)
    s.run = rd.id
    yield s
    s.stop()


@pytest.fixture(scope="module")
def llama(server):
    return llamacpp_client.LlamaCppClient([llamacpp_client.LlamaCppServerAddress("127.0.0.1", server.port)])


@pytest.fixture(scope="module")
def oa(server):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="unused", max_retries=0)


# -- llamacpp-client ---------------------------------------------------------------------------

def test_llamacpp_client_completes_and_streams(llama):
    r = llama.new_completion("one", n_predict=12, seed=1)
    assert r.tokens_predicted == 12 and r.content and r.stop_type == "limit"
    assert r.tokens_evaluated == 3 and r.tokens_cached >= 3 + 11 and r.truncated is False
    chunks = list(llama.new_stream_completion("one", n_predict=12, seed=1))
    assert len(chunks) == 13 and chunks[-1].stop and chunks[-1].stop_type == "limit"
    assert all(c.tokens_evaluated == 3 for c in chunks)
    assert "".join(c.content for c in chunks) == r.content  # same seed, penalties and all: the same text
    full = llama.completion("one", n_predict=5, n_probs=3, seed=1)
    probs = full["completion_probabilities"]
    assert len(probs) == 5 and all(p["top_logprobs"] and p["logprob"] <= 0 for p in probs)


def test_a_prompt_longer_than_the_context_is_reported_truncated(llama, server):
    long_prompt = "one\ttwo three\n" * 20  # 280 bytes; the model's context is 32
    r = llama.completion(long_prompt, n_predict=4, seed=0)
    assert r["truncated"] is True and r["tokens_dropped"] == len(long_prompt) - 32
    assert r["tokens_evaluated"] == len(long_prompt)
    assert llama.completion("one", n_predict=4)["truncated"] is False


def test_grammar_bias_and_ignore_eos_are_honoured(llama):
    only_a = llama.completion("one", n_predict=20, grammar='root ::= "a"+', seed=2)
    assert only_a["content"] and set(only_a["content"]) == {"a"}
    banned = llama.completion("one\ttwo three\nfour\tfive six\n", n_predict=60, temperature=0,
                              logit_bias=[["e", False], ["o", False]])
    assert len(banned["content"]) == 60 and not set(banned["content"]) & {"e", "o"}
    # the separator made all but certain: the generation ends at once, unless ignore_eos
    ends = llama.completion("one", n_predict=30, logit_bias=[[EOT, 100]])
    assert ends["tokens_predicted"] == 0 and ends["stop_type"] == "eos"
    kept = llama.completion("one", n_predict=30, logit_bias=[[EOT, 100]], ignore_eos=True)
    assert kept["tokens_predicted"] == 30 and kept["stop_type"] == "limit"
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}
    import json

    got = llama.completion("one", n_predict=40, json_schema=schema, seed=3)
    assert got["stop_type"] == "eos" and isinstance(json.loads(got["content"])["n"], int)


def test_unimplemented_fields_are_named_in_warnings(llama):
    r = llama.completion("one", n_predict=2, mirostat=2, typical_p=1.0, frobnicate=1)
    assert any("mirostat" in w for w in r["warnings"]) and any("frobnicate" in w for w in r["warnings"])
    assert not any("typical_p" in w for w in r["warnings"])  # at its neutral value it changes nothing
    r = llama.completion("one", n_predict=100000)
    assert any("n_predict" in w for w in r["warnings"]) and r["tokens_predicted"] <= 4096


# -- the openai SDK -----------------------------------------------------------------------------

def test_openai_batch_n_usage_and_offsets(oa, server):
    out = oa.completions.create(model=server.run, prompt=["one", "two three"], max_tokens=4, n=2, seed=5,
                                logprobs=0)
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    assert out.choices[0].text != out.choices[1].text or out.choices[0].logprobs != out.choices[1].logprobs
    assert out.usage.prompt_tokens == 3 + 9 and out.usage.completion_tokens == 16
    lp = out.choices[2].logprobs
    assert lp.text_offset[0] == len("two three") and len(lp.token_logprobs) == 4
    assert all(len(top) == 1 for top in lp.top_logprobs)  # logprobs = 0: the sampled token alone
    echo = oa.completions.create(model=server.run, prompt="one", max_tokens=3, echo=True, logprobs=2, seed=1)
    c = echo.choices[0]
    assert c.text.startswith("one") and c.logprobs.token_logprobs[0] is None
    assert c.logprobs.tokens[:3] == ["o", "n", "e"] and c.logprobs.text_offset[:4] == [0, 1, 2, 3]
    stream = oa.completions.create(model=server.run, prompt="one", max_tokens=5, stream=True,
                                   stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].usage.completion_tokens == 5 and chunks[-1].choices == []
    assert all(ch.usage is None for ch in chunks[:-1])


def test_openai_models_and_an_unknown_model(oa, server):
    m = oa.models.retrieve(server.run)
    assert m.id == server.run and m.model_extra["meta"]["n_ctx_train"] == 32
    with pytest.raises(openai.NotFoundError) as e:
        oa.models.retrieve("gpt-4")
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        oa.completions.create(model="gpt-4", prompt="one", max_tokens=2)


def test_openai_chat_whole_and_streamed(oa, server):
    msgs = [{"role": "system", "content": "Count."}, {"role": "user", "content": "one two"}]
    r = oa.chat.completions.create(model=server.run, messages=msgs, max_tokens=8, seed=4, logprobs=True,
                                   top_logprobs=2)
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert len(choice.logprobs.content) == r.usage.completion_tokens
    assert all(len(t.top_logprobs) == 2 for t in choice.logprobs.content)
    assert "\nUser:" not in choice.message.content
    parts = list(oa.chat.completions.create(model=server.run, messages=msgs, max_tokens=8, seed=4, stream=True,
                                            stream_options={"include_usage": True}))
    assert parts[0].choices[0].delta.role == "assistant"
    text = "".join(p.choices[0].delta.content or "" for p in parts if p.choices)
    assert text == choice.message.content
    assert parts[-1].usage.completion_tokens == r.usage.completion_tokens
    convictions = [p.choices[0].model_extra.get("conviction") for p in parts if p.choices and p.choices[0].delta.content]
    assert convictions and all(isinstance(c, float) for c in convictions)


# -- langchain-openai -------------------------------------------------------------------------

def test_langchain_llm_batch_and_chat(server):
    from langchain_openai import ChatOpenAI, OpenAI

    base = f"http://127.0.0.1:{server.port}/v1"
    llm = OpenAI(base_url=base, api_key="unused", model=server.run, max_tokens=4, max_retries=0)
    outs = llm.batch(["one", "two"])
    assert len(outs) == 2 and all(isinstance(o, str) and o for o in outs)
    chat = ChatOpenAI(base_url=base, api_key="unused", model=server.run, max_tokens=6, max_retries=0)
    reply = chat.invoke("one two")
    assert isinstance(reply.content, str)
    streamed = "".join(part.content for part in chat.stream("one two"))
    assert isinstance(streamed, str)
