"""The capture layer: hooks record one forward pass faithfully and leave the model untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from glassgpt.config import ModelConfig
from glassgpt.explain.look.trace import causal_attention_weights, trace
from glassgpt.model import GPT
from glassgpt.runs import load_run


@pytest.fixture(scope="module")
def trained(tiny_run: Path) -> GPT:
    return load_run(tiny_run).model


def _random_model(n_kv_head: int) -> GPT:
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=97, context_length=24, n_layer=2, n_head=4, n_kv_head=n_kv_head, d_model=32
    )
    return GPT(config).eval()


def _models(trained: GPT) -> list[GPT]:
    # The tiny preset uses grouped-query attention (2 kv heads for 4 heads); add plain multi-head.
    return [trained, _random_model(n_kv_head=4), _random_model(n_kv_head=1)]


def _ids(model: GPT, length: int = 17) -> list[int]:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, model.config.vocab_size, (length,), generator=g).tolist()


def test_trace_matches_a_plain_forward_pass(trained: GPT) -> None:
    for model in _models(trained):
        ids = _ids(model)
        t = trace(model, ids)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        torch.testing.assert_close(t.logits, logits)
        torch.testing.assert_close(model.lm_head(t.final_hidden), logits)
        assert t.embeddings.shape == (len(ids), model.config.d_model)
        assert len(t.layers) == model.config.n_layer


def test_hooks_are_removed_after_each_call(trained: GPT) -> None:
    trace(trained, _ids(trained))
    for module in trained.modules():
        assert not module._forward_hooks
        assert not module._forward_pre_hooks


def test_attention_rows_sum_to_one_and_nothing_attends_to_the_future(trained: GPT) -> None:
    for model in _models(trained):
        weights = trace(model, _ids(model)).attention  # (L, H, T, T)
        length = weights.shape[-1]
        assert weights.shape == (model.config.n_layer, model.config.n_head, length, length)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
        future = torch.ones(length, length, dtype=torch.bool).triu(1)
        assert torch.all(weights[..., future] == 0)
        assert torch.all(weights >= 0)
        assert torch.all(weights[..., 0, 0] == 1)  # the first position can only read itself


def test_recomputed_attention_reproduces_the_attention_output(trained: GPT) -> None:
    """weights @ V, then the output projection, equals what the attention module returned."""
    for model in _models(trained):
        for layer in trace(model, _ids(model)).layers:
            torch.testing.assert_close(
                layer.attention_output(), layer.attn_out, atol=1e-5, rtol=1e-4
            )


def test_causal_weights_match_pytorch_sdpa() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 9, 8, generator=g) for _ in range(3))
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(causal_attention_weights(q, k) @ v, expected, atol=1e-5, rtol=1e-5)


def test_residual_stream_bookkeeping(trained: GPT) -> None:
    """embedding + every attention and MLP contribution = the stream before the final norm."""
    for model in _models(trained):
        t = trace(model, _ids(model))
        total = t.embeddings + sum(layer.attn_out + layer.mlp_out for layer in t.layers)
        torch.testing.assert_close(total, t.layers[-1].residual_out, atol=1e-5, rtol=1e-5)
        for before, layer in zip(
            [t.embeddings, *(x.residual_out for x in t.layers)], t.layers, strict=False
        ):
            torch.testing.assert_close(layer.residual_in, before)
            torch.testing.assert_close(layer.residual_mid + layer.mlp_out, layer.residual_out)
        with torch.no_grad():
            torch.testing.assert_close(model.final_norm(t.layers[-1].residual_out), t.final_hidden)
        assert t.residual_stream().shape == (
            model.config.n_layer + 1,
            len(t.ids),
            model.config.d_model,
        )


def test_trace_rejects_empty_and_too_long_input(trained: GPT) -> None:
    with pytest.raises(ValueError):
        trace(trained, [])
    with pytest.raises(ValueError, match="exceed the context"):
        trace(trained, [1] * (trained.config.context_length + 1))


def test_trace_keeps_the_training_flag(trained: GPT) -> None:
    trained.train()
    try:
        trace(trained, _ids(trained, 5))
        assert trained.training
    finally:
        trained.eval()


def test_trace_uses_the_models_own_queries_keys_and_values(
    trained: GPT, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The q, k, v shown are bit for bit what the model handed to its attention kernel."""
    seen: list[tuple[torch.Tensor, ...]] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append((q.clone(), k.clone(), v.clone()))
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    for model in _models(trained):
        seen.clear()
        layers = trace(model, _ids(model)).layers
        assert len(seen) == len(layers)
        for layer, (q, k, v) in zip(layers, seen, strict=True):
            # The kernel gets each key/value head once (SDPA's enable_gqa pairs it with its group
            # of query heads); the trace shows it once per query head.
            groups = q.size(1) // k.size(1)
            assert torch.equal(layer.queries, q[0])
            assert torch.equal(layer.keys, k[0].repeat_interleave(groups, dim=0))
            assert torch.equal(layer.values, v[0].repeat_interleave(groups, dim=0))


def test_a_recomputation_out_of_step_with_the_model_is_refused(
    trained: GPT, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If model.py's attention changed and the trace did not follow, views fail loudly."""
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def other_scale(q, k, v, *args, **kwargs):  # as if the model switched to 1/Dh scaling
        return sdpa(q, k, v, *args, scale=1.0 / q.size(-1), **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.functional, "scaled_dot_product_attention", other_scale)
        with pytest.raises(RuntimeError, match="no longer matches"):
            trace(trained, _ids(trained))


def test_the_recomputation_check_is_tight(trained: GPT, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights off by only 0.01% (rows still summing to one) are refused, not shown.

    (The old tolerance, 1e-3 of the output's scale plus 1e-3, let this through.)
    """
    exact = causal_attention_weights

    def slightly_off(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        weights = exact(queries, keys)
        itself = torch.eye(weights.shape[-1]).expand_as(weights)  # each position reads itself
        return (1 - 1e-4) * weights + 1e-4 * itself

    monkeypatch.setattr("glassgpt.explain.look.trace.causal_attention_weights", slightly_off)
    for model in _models(trained):
        with pytest.raises(RuntimeError, match="no longer matches"):
            trace(model, _ids(model))
