"""The official `openai` client against `glassgpt serve`: every answer pinned to the engine itself.

The reference is `Engine.generate_ids` (and `Engine.generate` for text with stop strings) called
directly on the same model with the same seed: the server must add nothing and lose nothing.
"""

from __future__ import annotations

import openai
import pytest

from glassgpt.chat_template import ChatTokens, render_prompt
from glassgpt.engine import Engine, SamplingConfig
from glassgpt.runs import load_run
from live_server import serving

PROMPT = "It is a truth universally"


def client(running, **kw) -> openai.OpenAI:
    kw.setdefault("api_key", "unused")
    return openai.OpenAI(base_url=running.base_url, max_retries=0, timeout=60, **kw)


def engine_of(running) -> Engine:
    return Engine(running.run.model, running.run.tokenizer)


def model_id(running) -> str:
    return running.run.path.name


def test_models_list_and_retrieve(base_server):
    c = client(base_server)
    models = c.models.list()
    assert [m.id for m in models.data] == [model_id(base_server)]
    assert models.data[0].owned_by == "glassgpt"
    assert c.models.retrieve(model_id(base_server)).id == model_id(base_server)
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("gpt-4")


def test_completion_greedy_equals_the_engine(base_server):
    got = client(base_server).completions.create(model=model_id(base_server), prompt=PROMPT, max_tokens=12,
                                                 temperature=0)
    engine = engine_of(base_server)
    ids, _ = engine.encode_prompt(PROMPT)
    ref = engine.generate_ids(ids, SamplingConfig(temperature=0, max_new_tokens=12)).samples[0]
    assert got.choices[0].text == base_server.run.tokenizer.decode(ref.token_ids)
    assert got.choices[0].finish_reason == ("length" if ref.finish_reason == "length" else "stop")
    assert got.usage.prompt_tokens == len(ids)
    assert got.usage.completion_tokens == len(ref.token_ids)
    assert got.usage.total_tokens == len(ids) + len(ref.token_ids)
    assert got.object == "text_completion" and got.id.startswith("cmpl-")


def test_completion_n_samples_with_a_seed_equal_the_engine(base_server):
    c = client(base_server)
    kw = dict(model=model_id(base_server), prompt=PROMPT, max_tokens=10, temperature=0.9, top_p=0.95, n=3,
              seed=1234, extra_body={"top_k": 40})
    got = c.completions.create(**kw)
    engine = engine_of(base_server)
    ids, _ = engine.encode_prompt(PROMPT)
    ref = engine.generate_ids(ids, SamplingConfig(temperature=0.9, top_p=0.95, top_k=40, max_new_tokens=10,
                                                  num_samples=3, seed=1234))
    texts = [base_server.run.tokenizer.decode(s.token_ids) for s in ref.samples]
    assert [ch.index for ch in got.choices] == [0, 1, 2]
    assert [ch.text for ch in got.choices] == texts
    assert len(set(texts)) > 1  # three different samples, not one copied
    assert got.usage.completion_tokens == sum(len(s.token_ids) for s in ref.samples)
    # the same seed again gives the same samples; another seed gives others
    assert [ch.text for ch in c.completions.create(**kw).choices] == texts
    assert [ch.text for ch in c.completions.create(**{**kw, "seed": 99}).choices] != texts


def test_streamed_completion_equals_the_whole_one(base_server):
    c = client(base_server)
    kw = dict(model=model_id(base_server), prompt=PROMPT, max_tokens=16, temperature=0.8, seed=7, n=2)
    whole = c.completions.create(**kw)
    pieces: dict[int, str] = {0: "", 1: ""}
    finish = {}
    usage = None
    chunks = 0
    for chunk in c.completions.create(**kw, stream=True, stream_options={"include_usage": True}):
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            pieces[ch.index] += ch.text
            if ch.finish_reason:
                finish[ch.index] = ch.finish_reason
    assert chunks > 4  # token by token, not one blob
    assert [pieces[0], pieces[1]] == [ch.text for ch in whole.choices]
    assert [finish[0], finish[1]] == [ch.finish_reason for ch in whole.choices]
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens


def test_stop_strings_cut_the_text_as_the_engine_does(base_server):
    engine = engine_of(base_server)
    sampling = SamplingConfig(temperature=0, max_new_tokens=30)
    full = engine.generate(PROMPT, sampling).completions[0].text
    stop = full[6:8]  # a piece of the greedy continuation: it must stop there
    assert stop.strip() and full.index(stop) < 20
    got = client(base_server).completions.create(model=model_id(base_server), prompt=PROMPT, max_tokens=30,
                                                 temperature=0, stop=[stop, "never appears"])
    ref = engine.generate(PROMPT, SamplingConfig(temperature=0, max_new_tokens=30,
                                                 stop=(stop, "never appears"))).completions[0]
    assert got.choices[0].text == ref.text == full[: full.index(stop)]
    assert got.choices[0].finish_reason == "stop"
    streamed = "".join(ch.choices[0].text for ch in client(base_server).completions.create(
        model=model_id(base_server), prompt=PROMPT, max_tokens=30, temperature=0, stop=stop, stream=True)
        if ch.choices)
    assert streamed == ref.text


def test_completion_logprobs_are_the_engines(base_server):
    got = client(base_server).completions.create(model=model_id(base_server), prompt=PROMPT, max_tokens=6,
                                                 temperature=0.7, seed=3, logprobs=3)
    engine = engine_of(base_server)
    ids, _ = engine.encode_prompt(PROMPT)
    ref = engine.generate_ids(ids, SamplingConfig(temperature=0.7, max_new_tokens=6, seed=3),
                              top_logprobs=3).samples[0]
    lp = got.choices[0].logprobs
    tok = base_server.run.tokenizer
    assert lp.tokens == [tok.token_str(i) for i in ref.token_ids]
    assert lp.token_logprobs == pytest.approx(ref.logprobs, abs=1e-6)
    assert len(lp.top_logprobs) == len(ref.token_ids)
    for top, ref_top in zip(lp.top_logprobs, ref.top_logprobs, strict=True):
        assert len(ref_top) == 3
        assert max(top.values()) == pytest.approx(ref_top[0][1], abs=1e-6)
    # the top log-probabilities are the model's own: the first is the full forward pass's best
    logits = engine.next_token_logits(ids)
    assert ref.top_logprobs[0][0][1] == pytest.approx(float(logits.log_softmax(-1).max()), abs=1e-4)
    assert "".join(lp.tokens) == got.choices[0].text
    assert lp.text_offset[0] == 0


def test_chat_completion_equals_the_engine_on_the_template(chat_server):
    c = client(chat_server)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who was the king?"}]
    got = c.chat.completions.create(model=model_id(chat_server), messages=messages, max_tokens=12,
                                    temperature=0.8, seed=5, n=2, logprobs=True, top_logprobs=2)
    tok = chat_server.run.tokenizer
    prompt = render_prompt(tok, messages)
    ref = engine_of(chat_server).generate_ids(prompt, SamplingConfig(temperature=0.8, max_new_tokens=12,
                                                                     num_samples=2, seed=5),
                                              stop_ids=[ChatTokens.of(tok).assistant_end], top_logprobs=2)
    assert got.object == "chat.completion"
    assert [ch.message.content for ch in got.choices] == [tok.decode(s.token_ids) for s in ref.samples]
    assert all(ch.message.role == "assistant" for ch in got.choices)
    assert got.usage.prompt_tokens == len(prompt)
    content = got.choices[0].logprobs.content
    assert [e.logprob for e in content] == pytest.approx(ref.samples[0].logprobs, abs=1e-6)
    assert all(len(e.top_logprobs) == 2 for e in content)
    assert bytes(content[0].bytes) == tok.token_bytes(ref.samples[0].token_ids[0])

    streamed = {0: "", 1: ""}
    roles = set()
    for chunk in c.chat.completions.create(model=model_id(chat_server), messages=messages, max_tokens=12,
                                           temperature=0.8, seed=5, n=2, stream=True):
        for ch in chunk.choices:
            streamed[ch.index] += ch.delta.content or ""
            if ch.delta.role:
                roles.add((ch.index, ch.delta.role))
    assert [streamed[0], streamed[1]] == [ch.message.content for ch in got.choices]
    assert roles == {(0, "assistant"), (1, "assistant")}


def test_chat_on_a_base_model_is_a_clear_400(base_server):
    with pytest.raises(openai.BadRequestError) as err:
        client(base_server).chat.completions.create(model=model_id(base_server),
                                                    messages=[{"role": "user", "content": "hi"}])
    assert "base model" in str(err.value) and "/v1/completions" in str(err.value)


def test_a_bad_conversation_is_a_400_with_the_templates_message(chat_server):
    with pytest.raises(openai.BadRequestError) as err:
        client(chat_server).chat.completions.create(
            model=model_id(chat_server), messages=[{"role": "assistant", "content": "hello"}])
    assert "user" in str(err.value)
    with pytest.raises(openai.BadRequestError):
        client(chat_server).chat.completions.create(model=model_id(chat_server), messages=[])


def test_api_key_is_required_when_set(tiny_run):
    with serving(load_run(tiny_run), api_key="s3cret") as running:
        with pytest.raises(openai.AuthenticationError):
            client(running).models.list()
        with pytest.raises(openai.AuthenticationError):
            client(running, api_key="wrong").completions.create(model=model_id(running), prompt="a", max_tokens=1)
        assert client(running, api_key="s3cret").models.list().data[0].id == model_id(running)
