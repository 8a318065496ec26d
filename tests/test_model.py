import math

import pytest
import torch

from glassgpt.config import ModelConfig
from glassgpt.interop.hf_llama import to_hf_model
from glassgpt.model import GPT, KVCache

CONFIGS = {
    "mha-tied": ModelConfig(vocab_size=300, context_length=48, n_layer=2, n_head=4, n_kv_head=4, d_model=64),
    "gqa-untied": ModelConfig(vocab_size=300, context_length=48, n_layer=3, n_head=4, n_kv_head=2,
                              d_model=64, tie_embeddings=False, rope_theta=500.0),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_equal_huggingface_llama(name):
    torch.manual_seed(0)
    config = CONFIGS[name]
    model = GPT(config).eval()
    # Perturb the norm weights so the test also checks where each norm is applied.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.add_(0.1 * torch.randn_like(p))
    hf = to_hf_model(model)
    ids = torch.randint(0, config.vocab_size, (2, config.context_length))
    with torch.no_grad():
        ours = model(ids).logits
        theirs = hf(ids).logits
    assert ours.shape == (2, config.context_length, config.vocab_size)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_parameter_count_matches_config():
    for config in CONFIGS.values():
        assert GPT(config).num_parameters() == config.num_parameters()
    assert ModelConfig(vocab_size=50257, context_length=1024, n_layer=12, n_head=12, n_kv_head=12,
                       d_model=768, mlp_hidden=2048).num_parameters() == pytest.approx(124e6, rel=0.01)


def test_initial_loss_is_about_ln_vocab():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=4096, context_length=64, n_layer=2, n_head=4, d_model=128)
    model = GPT(config)
    ids = torch.randint(0, 4096, (4, 64))
    loss = model(ids, targets=torch.roll(ids, -1, dims=1)).loss.item()
    assert abs(loss - math.log(4096)) < 0.1


@pytest.mark.parametrize("name", CONFIGS)
def test_cached_logits_equal_uncached(name):
    torch.manual_seed(0)
    config = CONFIGS[name]
    model = GPT(config).eval()
    ids = torch.randint(0, config.vocab_size, (2, 30))
    with torch.no_grad():
        full = model(ids).logits
        cache = KVCache(config, batch_size=2, max_length=config.context_length)
        pieces = [model(ids[:, :10], kv_cache=cache).logits]  # prefill
        pieces.append(model(ids[:, 10:17], kv_cache=cache).logits)  # a chunk after the cache
        pieces += [model(ids[:, t:t + 1], kv_cache=cache).logits for t in range(17, 30)]  # decode
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)
    assert cache.position == 30


def test_targets_minus_one_are_ignored_and_context_is_enforced():
    config = CONFIGS["mha-tied"]
    model = GPT(config)
    ids = torch.randint(0, config.vocab_size, (1, 8))
    targets = ids.clone()
    targets[:, 4:] = -1
    full = model(ids[:, :4], targets=targets[:, :4]).loss
    torch.testing.assert_close(model(ids, targets=targets).loss, full)
    with pytest.raises(ValueError, match="exceeds the context"):
        model(torch.zeros(1, config.context_length + 1, dtype=torch.long))
