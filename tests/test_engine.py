from pathlib import Path

import pytest
import torch

from glassgpt.engine import (
    Engine,
    SamplingConfig,
    filter_logits,
    next_token_probabilities,
    sample_next,
)
from glassgpt.errors import GlassError
from glassgpt.runs import load_run


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
    assert result.completions[0].token_ids == naive_greedy(engine, "It is a truth", 20)


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
