import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from glassgpt.config import ModelConfig
from glassgpt.engine import (
    Completion,
    Engine,
    SampleIds,
    SamplingConfig,
    filter_logits,
    next_token_probabilities,
    sample_next,
)
from glassgpt.errors import GlassError
from glassgpt.model import GPT, KVCache
from glassgpt.runs import load_run
from glassgpt.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def engine(tiny_run: Path) -> Engine:
    run = load_run(tiny_run)
    return Engine(run.model, run.tokenizer)


def naive_greedy(engine: Engine, prompt: str, n: int) -> list[int]:
    """Reference: full forward pass over the whole sequence for every token, no cache."""
    ids, _ = engine.encode_prompt(prompt)
    out = []
    for _ in range(n):
        next_id = int(engine.next_token_logits(ids).argmax())
        ids.append(next_id)
        out.append(next_id)
    return out


def test_cached_greedy_equals_uncached_greedy(engine: Engine):
    result = engine.generate("It is a truth", SamplingConfig(temperature=0, max_new_tokens=20, stop_at_eos=False))
    completion = result.completions[0]
    assert completion.token_ids == naive_greedy(engine, "It is a truth", 20)
    # Each log-prob is the model's own at temperature 1 (not the 0 / 1 of the greedy pick).
    ids = list(result.prompt_ids)
    for token, logprob in zip(completion.token_ids, completion.logprobs, strict=True):
        assert logprob == pytest.approx(float(engine.next_token_logits(ids).log_softmax(-1)[token]), abs=1e-4)
        assert logprob < 0
        ids.append(token)


def test_temperature_zero_is_deterministic_and_samples_share_it(engine: Engine):
    sampling = SamplingConfig(temperature=0, max_new_tokens=15, num_samples=3, stop_at_eos=False)
    a = engine.generate("The king", sampling).completions
    b = engine.generate("The king", sampling).completions
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    assert a[0].token_ids == a[1].token_ids == a[2].token_ids


def test_same_seed_same_text_and_batched_samples_differ(engine: Engine):
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=20, num_samples=4, seed=7, stop_at_eos=False)
    a = engine.generate("And God said", sampling).completions
    b = engine.generate("And God said", sampling).completions
    assert [c.text for c in a] == [c.text for c in b]
    assert len({tuple(c.token_ids) for c in a}) > 1


def test_top_k_and_top_p_never_leave_the_allowed_set():
    torch.manual_seed(0)
    logits = torch.randn(64, 100) * 3
    generator = torch.Generator().manual_seed(0)
    top5 = logits.topk(5, dim=-1).indices
    for _ in range(20):
        chosen = sample_next(logits, SamplingConfig(temperature=1.5, top_k=5), generator)
        assert (top5 == chosen[:, None]).any(dim=1).all()
    probs = logits.softmax(-1)
    allowed = filter_logits(logits, top_p=0.6) > float("-inf")
    # The allowed set is the smallest prefix of the ranking whose mass reaches 0.6.
    for row in range(64):
        order = probs[row].argsort(descending=True)
        mass = probs[row][order].cumsum(0)
        size = int((mass < 0.6).sum()) + 1
        assert set(order[:size].tolist()) == set(allowed[row].nonzero().flatten().tolist())
    for _ in range(20):
        chosen = sample_next(logits, SamplingConfig(temperature=1.0, top_p=0.6), generator)
        assert allowed[torch.arange(64), chosen].all()


def test_temperature_reshapes_probabilities():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    greedy = next_token_probabilities(logits, 0)
    assert greedy.tolist() == [[1.0, 0.0, 0.0]]
    cold, warm = next_token_probabilities(logits, 0.5), next_token_probabilities(logits, 2.0)
    assert cold[0, 0] > logits.softmax(-1)[0, 0] > warm[0, 0]
    torch.testing.assert_close(warm.sum(-1), torch.ones(1))


def test_streamed_text_equals_final_text_and_stop_strings_cut(engine: Engine):
    pieces: list[str] = []
    sampling = SamplingConfig(temperature=0.9, max_new_tokens=40, seed=3, stop_at_eos=False)
    result = engine.generate("Call me", sampling, on_text=lambda _, t: pieces.append(t))
    assert "".join(pieces) == result.completions[0].text
    full = result.completions[0].text
    stop = full[10:12]
    pieces.clear()
    stopped = engine.generate("Call me", SamplingConfig(temperature=0.9, max_new_tokens=40, seed=3,
                                                        stop_at_eos=False, stop=(stop,)),
                              on_text=lambda _, t: pieces.append(t))
    completion = stopped.completions[0]
    assert completion.finish_reason == "stop"
    assert completion.text == full[: full.index(stop)]
    assert "".join(pieces) == completion.text


def test_long_prompts_are_cropped_and_generation_runs_past_the_context(engine: Engine):
    context = engine.context
    long_prompt = "the king and the queen " * context
    result = engine.generate(long_prompt, SamplingConfig(temperature=0, max_new_tokens=context + 10,
                                                         stop_at_eos=False))
    assert result.cropped_tokens > 0
    assert len(result.prompt_ids) == context - 1
    assert len(result.completions[0].token_ids) == context + 10


@pytest.mark.parametrize("bad, message", [
    ({"temperature": -0.1}, "temperature"), ({"top_p": 0.0}, "top-p"), ({"top_p": 1.5}, "top-p"),
    ({"top_k": -1}, "top-k"), ({"max_new_tokens": 0}, "max new tokens"), ({"num_samples": 0}, "samples"),
])
def test_bad_sampling_options_are_rejected(bad: dict, message: str):
    with pytest.raises(GlassError, match=message):
        SamplingConfig(**bad)


# ----------------------------------------------------------------------------- token level
# These use small random models (built in milliseconds) and compare the cached, batched engine
# with an uncached reference: one plain forward pass over the whole window, logits at its end.

CHARS = "abcdefghijklmnopqrstuvwxyz .,"


def random_engine(context: int = 64, seed: int = 0, head_std: float = 0.5, position: str = "rope") -> Engine:
    """A random char-level model whose output head is scaled up, so that its distributions are
    peaked (top-k / top-p then keep few tokens) rather than nearly uniform."""
    tokenizer = Tokenizer.train_char([CHARS])
    config = ModelConfig(vocab_size=tokenizer.vocab_size, context_length=context, n_layer=2,
                         n_head=2, n_kv_head=1, d_model=32, tie_embeddings=False, position=position)
    torch.manual_seed(seed)
    model = GPT(config)
    with torch.no_grad():
        model.lm_head.weight.normal_(0, head_std)
    return Engine(model.eval(), tokenizer)


def uncached_logits(engine: Engine, window: list[int]) -> torch.Tensor:
    """The reference: a full forward pass over `window`, no KV cache; logits (V,) at its end."""
    with torch.no_grad():
        return engine.model(torch.tensor([window])).logits[0, -1].float()


def allowed(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> set[int]:
    """The tokens that sampling may draw, computed here from the ranking (not with filter_logits).

    top-k first, then the smallest prefix of what is left whose renormalised mass reaches top_p;
    a 1e-4 slack on top_p keeps a token on the edge, whose mass differs in the last bits between
    the cached and uncached computations, from failing the test.
    """
    order = (logits / temperature).argsort(descending=True)
    if top_k:
        order = order[:top_k]
    probs = (logits[order] / temperature).softmax(-1)
    before = probs.cumsum(0) - probs
    return set(order[before < top_p + 1e-4].tolist())


def check_against_uncached(engine: Engine, prompt_ids: list[int], sample: SampleIds | Completion,
                           sampling: SamplingConfig,
                           window_rule: Callable[[int, int], int] | None = None) -> None:
    """Every token of `sample` is allowed and its log-prob is the uncached model's."""
    history = list(prompt_ids)
    start = 0
    for token, logprob in zip(sample.token_ids, sample.logprobs, strict=True):
        if window_rule is not None:
            start = window_rule(start, len(history))
        logits = uncached_logits(engine, history[start:])
        assert abs(logprob - float(logits.log_softmax(-1)[token])) < 1e-4
        assert token in allowed(logits, sampling.temperature, sampling.top_k, sampling.top_p)
        history.append(token)


def test_generate_ids_batched_samples_match_the_uncached_model():
    engine = random_engine()
    prompt_ids = [engine.tokenizer.bos_id, *engine.tokenizer.encode("the cat sat")]
    sampling = SamplingConfig(temperature=1.3, top_k=10, max_new_tokens=16, num_samples=3, seed=1,
                              stop_at_eos=False)
    result = engine.generate_ids(prompt_ids, sampling)
    assert result.prompt_ids == prompt_ids and result.cropped_tokens == 0
    assert len(result.samples) == 3
    assert len({tuple(s.token_ids) for s in result.samples}) > 1  # the rows really are different
    for sample in result.samples:
        assert sample.finish_reason == "length" and len(sample.token_ids) == 16
        check_against_uncached(engine, prompt_ids, sample, sampling)
    # The same seed draws the same ids.
    again = engine.generate_ids(prompt_ids, sampling)
    assert [s.token_ids for s in again.samples] == [s.token_ids for s in result.samples]


def test_generate_ids_slides_its_window_past_the_context_with_learned_positions():
    context = 16
    engine = random_engine(context=context, seed=2, position="learned")
    assert not engine.rolling
    prompt_ids = [engine.tokenizer.bos_id, *engine.tokenizer.encode("a dog ran")]
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=3 * context, num_samples=2, seed=3,
                              stop_at_eos=False)
    result = engine.generate_ids(prompt_ids, sampling)
    starts: set[int] = set()

    def window_rule(start: int, length: int) -> int:
        """The window the engine predicts from: history[start:]. It grows by one token per step
        until it would hold more than the context; then it restarts as the last 3/4 of the
        context (the engine reads those in again, positions from 0)."""
        if length - start > context:
            start = length - 3 * context // 4
        starts.add(start)
        return start

    for sample in result.samples:
        assert len(sample.token_ids) == 3 * context
        check_against_uncached(engine, prompt_ids, sample, sampling, window_rule)
    assert len(starts) >= 3  # the window really slid, more than once


def banded_logits(engine: Engine, ids: list[int], window: int, monkeypatch: pytest.MonkeyPatch) -> torch.Tensor:
    """The reference for a rolling cache: one full forward pass over all of `ids` (as if the
    context were that long; the RoPE table just gets longer), every position attending to itself
    and the `window - 1` positions before it. Logits (T, V)."""
    config = engine.model.config
    long_model = GPT(dataclasses.replace(config, context_length=len(ids))).eval()
    long_model.load_state_dict(engine.model.state_dict())
    plain_attention = torch.nn.functional.scaled_dot_product_attention

    def band_attention(q, k, v, is_causal=False, **kwargs):
        T = q.size(-2)
        query, key = torch.arange(T)[:, None], torch.arange(T)[None, :]
        band = (key <= query) & (key > query - window)
        return plain_attention(q, k, v, attn_mask=band)

    with monkeypatch.context() as patch, torch.no_grad():
        patch.setattr(torch.nn.functional, "scaled_dot_product_attention", band_attention)
        return long_model(torch.tensor([ids])).logits[0].float()


def test_generate_ids_rolls_a_rotary_cache_past_the_context(monkeypatch):
    """Past the context, each new token overwrites the oldest cached position: one position of
    work per token, and the same logits as a full pass with the causal mask cut to a band of
    `context` positions (never a re-read of the window)."""
    context = 16
    engine = random_engine(context=context, seed=2)
    assert engine.rolling
    prompt_ids = [engine.tokenizer.bos_id, *engine.tokenizer.encode("a dog ran")]
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=4 * context, num_samples=2, seed=3,
                              stop_at_eos=False)
    forward_lengths: list[int] = []
    hook = engine.model.register_forward_pre_hook(lambda _, args: forward_lengths.append(args[0].size(1)))
    try:
        result = engine.generate_ids(prompt_ids, sampling)
    finally:
        hook.remove()
    # One prefill of the prompt, then one position per new token (the last one needs no pass).
    assert forward_lengths == [len(prompt_ids)] + [1] * (4 * context - 1)
    assert len({tuple(s.token_ids) for s in result.samples}) == 2
    for sample in result.samples:
        assert len(sample.token_ids) == 4 * context
        ids = prompt_ids + sample.token_ids
        reference = banded_logits(engine, ids, context, monkeypatch).log_softmax(-1)
        predicted_at = range(len(prompt_ids) - 1, len(ids) - 1)  # the position that predicts each new token
        expected = [float(reference[at, token]) for at, token in zip(predicted_at, sample.token_ids, strict=True)]
        assert sample.logprobs == pytest.approx(expected, abs=1e-4)
    # The band matters: a plain causal pass over everything (a context of 4x) predicts differently.
    unbanded = banded_logits(engine, ids, len(ids), monkeypatch).log_softmax(-1)
    late = [float(unbanded[at, token]) for at, token in zip(predicted_at, sample.token_ids, strict=True)][2 * context:]
    assert late != pytest.approx(expected[2 * context:], abs=1e-3)


def test_a_rolling_cache_takes_one_position_at_a_time_past_its_length():
    engine = random_engine(context=8)
    config = engine.model.config
    with pytest.raises(ValueError, match="only a rotary"):
        KVCache(dataclasses.replace(config, position="learned"), 1, 8, rolling=True)
    cache = KVCache(config, 1, 8, rolling=True)
    with torch.no_grad():
        engine.model(torch.zeros(1, 7, dtype=torch.long), kv_cache=cache)
        with pytest.raises(ValueError, match="one position at a time"):
            engine.model(torch.zeros(1, 2, dtype=torch.long), kv_cache=cache)
        for _ in range(20):
            engine.model(torch.zeros(1, 1, dtype=torch.long), kv_cache=cache)
    assert cache.position == 27


def test_generate_ids_crops_long_prompts_and_rejects_bad_ones():
    engine = random_engine(context=16)
    result = engine.generate_ids(list(range(5)) * 10, SamplingConfig(temperature=0, max_new_tokens=2))
    assert result.cropped_tokens == 50 - 15 and result.prompt_ids == (list(range(5)) * 10)[-15:]
    with pytest.raises(GlassError, match="at least one token"):
        engine.generate_ids([], SamplingConfig())
    with pytest.raises(GlassError, match="token ids"):
        engine.generate_ids([engine.model.config.vocab_size], SamplingConfig())


def test_generate_with_top_k_top_p_and_temperature_stays_in_the_allowed_set():
    engine = random_engine(seed=4)
    sampling = SamplingConfig(temperature=0.7, top_k=6, top_p=0.8, max_new_tokens=20, num_samples=3,
                              seed=5, stop_at_eos=False)
    result = engine.generate("once upon", sampling)
    for completion in result.completions:
        assert len(completion.token_ids) == 20
        assert completion.text == engine.tokenizer.decode(completion.token_ids)
        check_against_uncached(engine, result.prompt_ids, completion, sampling)
    # The filter bites: some step had tokens of non-negligible probability outside the set.
    logits = uncached_logits(engine, result.prompt_ids)
    assert len(allowed(logits, 0.7, 6, 0.8)) < len(allowed(logits, 0.7, 0, 1.0))


def add_to_logits(engine: Engine, bias: torch.Tensor) -> torch.utils.hooks.RemovableHandle:
    """Add `bias` (V,) to every logit the model produces (a hook on the output head)."""
    return engine.model.lm_head.register_forward_hook(lambda _module, _inputs, out: out + bias)


def test_stops_at_eos_without_returning_it():
    engine = random_engine(seed=6, head_std=0.1)
    eos = engine.tokenizer.eos_id
    bias = torch.zeros(engine.model.config.vocab_size)
    bias[eos] = 2.0  # likely but not certain (about 1 in 5): samples run a few tokens, then end
    hook = add_to_logits(engine, bias)
    try:
        sampling = SamplingConfig(temperature=1.0, max_new_tokens=200, num_samples=4, seed=7)
        result = engine.generate_ids([engine.tokenizer.bos_id], sampling)
        assert any(s.token_ids for s in result.samples)
        for sample in result.samples:
            assert sample.finish_reason == "eos" and sample.stop_id == eos
            assert eos not in sample.token_ids and len(sample.token_ids) < 200
            # The stop id's log-prob is reported like any token's (RL needs the choice to stop).
            logits = uncached_logits(engine, [engine.tokenizer.bos_id, *sample.token_ids])
            assert sample.stop_logprob == pytest.approx(float(logits.log_softmax(-1)[eos]), abs=1e-4)
        text = engine.generate("abc", sampling)
        for completion in text.completions:
            assert completion.finish_reason == "eos" and eos not in completion.token_ids
            assert "<|eos|>" not in completion.text
        # Without stop_at_eos the eos id is just another token.
        kept = engine.generate_ids([engine.tokenizer.bos_id],
                                   SamplingConfig(temperature=0, max_new_tokens=5, stop_at_eos=False))
        assert kept.samples[0].token_ids == [eos] * 5 and kept.samples[0].finish_reason == "length"
    finally:
        hook.remove()


def test_stops_at_any_of_several_stop_ids():
    engine = random_engine(seed=8, head_std=0.1)
    a, b, c = engine.tokenizer.encode("xyz")
    bias = torch.zeros(engine.model.config.vocab_size)
    bias[[a, b]], bias[c] = 3.0, 5.0  # c is the likeliest token but not a stop id
    hook = add_to_logits(engine, bias)
    try:
        sampling = SamplingConfig(temperature=1.0, max_new_tokens=100, num_samples=16, seed=9,
                                  stop_at_eos=False)
        result = engine.generate_ids([engine.tokenizer.bos_id], sampling, stop_ids={a, b})
        hit = set()
        for sample in result.samples:
            assert sample.finish_reason == "stop_id" and sample.stop_id in (a, b)
            assert a not in sample.token_ids and b not in sample.token_ids
            hit.add(sample.stop_id)
        assert hit == {a, b}
        assert any(c in s.token_ids for s in result.samples)  # not a stop id: kept
    finally:
        hook.remove()


def test_on_token_can_stop_a_sample():
    engine = random_engine()
    seen: list[tuple[int, int]] = []

    def on_token(i: int, token: int) -> bool:
        seen.append((i, token))
        return i == 1 and sum(1 for j, _ in seen if j == 1) == 3  # stop sample 1 after 3 tokens

    sampling = SamplingConfig(temperature=1.0, max_new_tokens=8, num_samples=2, seed=0, stop_at_eos=False)
    result = engine.generate_ids([engine.tokenizer.bos_id], sampling, on_token=on_token)
    assert [s.finish_reason for s in result.samples] == ["length", "stop"]
    assert [len(s.token_ids) for s in result.samples] == [8, 3]
    assert [t for i, t in seen if i == 0] == result.samples[0].token_ids


def test_top_logprobs_and_on_step_see_each_token_as_it_comes(engine: Engine):
    """on_step gets the sample so far; top log-probabilities are the full forward pass's best k."""
    sampling = SamplingConfig(temperature=0.8, max_new_tokens=6, num_samples=2, seed=4, stop_at_eos=False)
    steps: list[tuple[int, int, float, list[tuple[int, float]]]] = []

    def on_step(i: int, sample: SampleIds) -> bool:
        steps.append((i, sample.token_ids[-1], sample.logprobs[-1], sample.top_logprobs[-1]))
        return i == 1 and len(sample.token_ids) == 4  # on_step can stop a sample, as on_token does

    ids, _ = engine.encode_prompt("The king")
    result = engine.generate_ids(ids, sampling, top_logprobs=5, on_step=on_step)
    plain = engine.generate_ids(ids, SamplingConfig(**{**sampling.__dict__, "max_new_tokens": 4}))
    assert [s.finish_reason for s in result.samples] == ["length", "stop"]
    assert result.samples[1].token_ids == plain.samples[1].token_ids  # asking for more changes no draw
    for i, sample in enumerate(result.samples):
        assert [(t, lp, top) for j, t, lp, top in steps if j == i] == list(
            zip(sample.token_ids, sample.logprobs, sample.top_logprobs, strict=True))
        context = list(ids)
        for token, top in zip(sample.token_ids, sample.top_logprobs, strict=True):
            reference = engine.next_token_logits(context).log_softmax(-1).topk(5)
            assert [t for t, _ in top] == reference.indices.tolist()
            assert [lp for _, lp in top] == pytest.approx(reference.values.tolist(), abs=1e-4)
            context.append(token)
    assert engine.generate_ids(ids, sampling).samples[0].top_logprobs == []  # only when asked for
    with pytest.raises(GlassError, match="top log-probabilities"):
        engine.generate_ids(ids, sampling, top_logprobs=-1)


def test_multibyte_characters_split_across_tokens_stream_whole():
    tokenizer = Tokenizer.train_bpe(["plain ascii text only, " * 20], vocab_size=300)
    text = "né 😀 中文!"
    script = tokenizer.encode(text)
    assert len(script) > len(text)  # bytes, not characters: some characters span several tokens
    assert any(_broken(tokenizer.token_bytes(t)) for t in script)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, context_length=32, n_layer=1, n_head=2,
                         d_model=16)
    engine = Engine(GPT(config), tokenizer)
    step = {"n": 0}

    def force_script(_module, _inputs, out: torch.Tensor) -> torch.Tensor:
        """Make the next scripted token the argmax at the last position, one per forward pass."""
        out = out.clone()
        out[:, -1, script[min(step["n"], len(script) - 1)]] += 100.0
        step["n"] += 1
        return out

    engine.model.lm_head.register_forward_hook(force_script)
    pieces: list[str] = []
    result = engine.generate("", SamplingConfig(temperature=0, max_new_tokens=len(script)),
                             on_text=lambda _, piece: pieces.append(piece))
    assert result.completions[0].token_ids == script
    assert all("\ufffd" not in piece for piece in pieces)
    assert "".join(pieces) == result.completions[0].text == text
    assert len(pieces) > 3  # it streamed, not one piece at the end

    step["n"] = 0
    pieces.clear()
    stopped = engine.generate("", SamplingConfig(temperature=0, max_new_tokens=len(script), stop=("中",)),
                              on_text=lambda _, piece: pieces.append(piece))
    assert stopped.completions[0].finish_reason == "stop"
    assert "".join(pieces) == stopped.completions[0].text == "né 😀 "


def _broken(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_the_engine_leaves_a_training_model_training():
    engine = random_engine()
    model = engine.model
    model.train()
    frozen = model.blocks[0]
    frozen.eval()  # a caller may keep part of the model in eval mode; that must survive too
    modes = {name: m.training for name, m in model.named_modules()}
    during: list[bool] = []
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=3, seed=0, stop_at_eos=False)

    def record(_i: int, _token: int) -> None:
        during.append(model.training or torch.is_grad_enabled())

    Engine(model, engine.tokenizer)  # building an engine does not switch modes either
    assert {name: m.training for name, m in model.named_modules()} == modes
    engine.generate_ids([engine.tokenizer.bos_id], sampling, on_token=record)
    assert during and not any(during)  # eval mode and no gradients while generating
    assert {name: m.training for name, m in model.named_modules()} == modes
    engine.generate("abc", sampling)
    assert {name: m.training for name, m in model.named_modules()} == modes
    engine.next_token_logits([engine.tokenizer.bos_id])
    assert {name: m.training for name, m in model.named_modules()} == modes

    def fail(_i: int, _token: int) -> None:
        raise RuntimeError("caller's callback failed")

    with pytest.raises(RuntimeError):
        engine.generate_ids([engine.tokenizer.bos_id], sampling, on_token=fail)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert model.training and not frozen.training and torch.is_grad_enabled()
