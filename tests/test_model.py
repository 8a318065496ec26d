import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from glassgpt import model as model_module
from glassgpt.config import ModelConfig
from glassgpt.interop.hf_llama import to_hf_model
from glassgpt.model import GPT, ChunkedCrossEntropy, KVCache, target_log_probs

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
def test_zeroed_residual_outputs_make_every_block_the_identity(name):
    torch.manual_seed(0)
    config = CONFIGS[name]
    model = GPT(config).eval()
    before = {n: p.clone() for n, p in model.named_parameters()}
    model.zero_residual_outputs()
    zeroed = {n for n, p in model.named_parameters() if not p.any()}
    assert zeroed == {f"blocks.{i}.{w}" for i in range(config.n_layer) for w in model_module.RESIDUAL_OUTPUTS}
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if n not in zeroed)
    ids = torch.randint(0, config.vocab_size, (2, 20))
    with torch.no_grad():
        # With the blocks adding nothing, the logits are the output layer on the normed embeddings.
        torch.testing.assert_close(model(ids).logits, model.lm_head(model.final_norm(model.embed(ids))))


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


def test_logits_to_keep_scores_only_the_last_positions():
    torch.manual_seed(0)
    config = CONFIGS["mha-tied"]
    model = GPT(config).eval()
    ids = torch.randint(0, config.vocab_size, (2, 12))
    with torch.no_grad():
        full = model(ids).logits
        for n in (1, 5, 12):
            assert model(ids, logits_to_keep=n).logits.shape == (2, n, config.vocab_size)
            torch.testing.assert_close(model(ids, logits_to_keep=n).logits, full[:, -n:], atol=1e-6, rtol=0)
        cache = KVCache(config, batch_size=2, max_length=config.context_length)
        last = model(ids[:, :9], kv_cache=cache, logits_to_keep=1).logits  # a prefill, as the engine reads it
        torch.testing.assert_close(last, full[:, 8:9], atol=1e-5, rtol=0)
        assert cache.position == 9  # every position is still cached
        torch.testing.assert_close(model(ids[:, 9:], kv_cache=cache).logits, full[:, 9:], atol=1e-5, rtol=0)


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


# The training loss is made in row chunks without the full logits (`ChunkedCrossEntropy`); it
# must equal the plain path, lm_head then F.cross_entropy, in value and in every gradient. In
# float64 the two differ only by summation order: atol 1e-12 / rtol 1e-10.
FLOAT64 = dict(atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("chunk_rows", [1, 5, 37, 1000])  # 37 rows: one per chunk, 5 leaves 2, all, more
def test_chunked_cross_entropy_equals_full_logits(chunk_rows):
    torch.manual_seed(0)
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    targets[::3] = -1  # ignored: neither in the loss nor in the count it is averaged over

    expected = F.cross_entropy(h @ w.t(), targets, ignore_index=-1)
    (2.5 * expected).backward()  # a gradient other than 1 must reach both inputs
    expected_grads = h.grad, w.grad
    h.grad = w.grad = None
    loss = ChunkedCrossEntropy.apply(h, w, targets, chunk_rows, True)
    (2.5 * loss).backward()

    torch.testing.assert_close(loss, expected, **FLOAT64)
    torch.testing.assert_close(h.grad, expected_grads[0], **FLOAT64)
    torch.testing.assert_close(w.grad, expected_grads[1], **FLOAT64)
    assert not h.grad[::3].any()  # an ignored position gets no gradient


def test_chunked_cross_entropy_is_exact_when_the_targets_probability_underflows():
    # In float32 the loss reads log p[target] off the softmax; a target hundreds of nats below
    # the best logit has p = 0 there, and must still get its exact (finite) loss and gradient.
    torch.manual_seed(0)
    h = torch.randn(9, 4)
    h[:4] *= 80  # logits hundreds apart in these rows
    w = torch.randn(6, 4)
    targets = (h @ w.t()).argmin(dim=1)  # the least likely token: p underflows in rows 0-3
    targets[3] = -1  # ignored: an underflowing row still adds nothing (not nan)
    reference_h, reference_w = h.double().requires_grad_(), w.double().requires_grad_()
    expected = F.cross_entropy(reference_h @ reference_w.t(), targets, ignore_index=-1)
    expected.backward()
    assert torch.softmax((h @ w.t())[:3], dim=-1).gather(1, targets[:3, None]).eq(0).all()  # it does underflow
    h.requires_grad_(), w.requires_grad_()

    loss = ChunkedCrossEntropy.apply(h, w, targets, 4, True)
    loss.backward()

    assert expected > 50  # the underflowing rows dominate it
    torch.testing.assert_close(loss.double(), expected.detach(), rtol=1e-5, atol=0)
    torch.testing.assert_close(h.grad.double(), reference_h.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(w.grad.double(), reference_w.grad, rtol=1e-4, atol=1e-5)
    # The GPU's way (every row's exact value computed, kept where p underflows) gives the same.
    logits = (h @ w.t()).detach()
    reference = torch.log_softmax(logits.double(), dim=-1).gather(1, targets.clamp(min=0)[:, None])[:, 0]
    for sync_free in (False, True):
        got = target_log_probs(torch.softmax(logits, dim=-1), logits, targets.clamp(min=0), sync_free)
        torch.testing.assert_close(got.double(), reference, rtol=1e-5, atol=1e-5)


# In a fresh process (its high-water mark of resident memory is its own), with glibc's default
# malloc, which returns arrays this large to the system when they are freed.
CHUNK_MEMORY = r"""
import torch
from glassgpt.model import ChunkedCrossEntropy
def peak_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
h, w = torch.randn(4096, 16, requires_grad=True), torch.randn(16384, 16, requires_grad=True)
targets = torch.randint(0, 16384, (4096,))
start = peak_mb()
ChunkedCrossEntropy.apply(h, w, targets, 2048, True).backward()
print(peak_mb() - start)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_training_loss_holds_one_chunk_of_logits_at_a_time():
    """A chunk's logits and softmax (2048 x 16384 float32, 128 MB each) are freed before the next
    chunk's are made: two such arrays at the peak, not the three of keeping the last ones around."""
    result = subprocess.run([sys.executable, "-c", CHUNK_MEMORY], capture_output=True, text=True, check=True)
    peak = float(result.stdout.strip().splitlines()[-1])
    array_mb = 2048 * 16384 * 4 / 2**20
    assert 2 * array_mb - 16 < peak < 2.5 * array_mb, peak


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])  # 2 x 24 = 48 rows: 7 does not divide them
@pytest.mark.parametrize("name", CONFIGS)
def test_training_loss_and_gradients_equal_full_logits(name, chunk_rows, monkeypatch):
    config = CONFIGS[name]
    monkeypatch.setattr(model_module, "LOSS_CHUNK_LOGITS", chunk_rows * config.vocab_size)
    assert model_module.loss_chunk_rows(config.vocab_size) == chunk_rows
    torch.manual_seed(0)
    model = GPT(config).double()
    ids = torch.randint(0, config.vocab_size, (2, 24))
    targets = torch.roll(ids, -1, dims=1)
    targets[0, -5:] = -1
    targets[1, 3] = -1

    expected = F.cross_entropy(model(ids).logits.flatten(0, 1), targets.flatten(), ignore_index=-1)
    expected.backward()
    expected_grads = {n: p.grad for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    out = model(ids, targets=targets)
    out.loss.backward()

    assert out.logits is None  # the training path never makes the (B, T, V) logits
    torch.testing.assert_close(out.loss, expected, **FLOAT64)
    assert expected_grads.keys() == {n for n, _ in model.named_parameters()}
    for n, p in model.named_parameters():  # embed.weight is also lm_head.weight when tied
        torch.testing.assert_close(p.grad, expected_grads[n], **FLOAT64, msg=lambda m, n=n: f"{n}: {m}")
    with torch.no_grad():  # without gradients the loss is the same, and nothing is kept for backward
        loss = model(ids, targets=targets).loss
    assert loss.grad_fn is None
    torch.testing.assert_close(loss, expected.detach(), **FLOAT64)


def test_training_loss_under_bf16_autocast_matches_full_logits():
    torch.manual_seed(0)
    config = CONFIGS["mha-tied"]
    model = GPT(config)
    ids = torch.randint(0, config.vocab_size, (2, 40))
    targets = torch.roll(ids, -1, dims=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids).logits
        expected = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-1)
    expected.backward()
    expected_grads = {n: p.grad for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(ids, targets=targets).loss
    loss.backward()

    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, atol=1e-4, rtol=0)
    for n, p in model.named_parameters():
        # Both round to bf16 in their matmuls (in different places): each is ~0.5% from the float64
        # gradients here, and they are as far from each other.
        assert p.grad.dtype == torch.float32
        assert (p.grad - expected_grads[n]).norm() < 2e-2 * expected_grads[n].norm(), n


GPT2_STYLE = ModelConfig(vocab_size=300, context_length=48, n_layer=2, n_head=4, d_model=64,
                         norm="layernorm", position="learned", mlp="gelu", bias=True)


def test_gpt2_switches_count_parameters_flops_and_cache_like_the_default():
    """(Equality with transformers' GPT2LMHeadModel: tests/interop/test_hf_import.py.)"""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = GPT(GPT2_STYLE).eval()
    assert model.num_parameters() == GPT2_STYLE.num_parameters()
    assert GPT2_STYLE.mlp_hidden == 4 * 64
    gpt2_small = ModelConfig(vocab_size=50257, context_length=1024, n_layer=12, n_head=12, d_model=768,
                             norm="layernorm", position="learned", mlp="gelu", bias=True)
    assert gpt2_small.num_parameters() == 124_439_808  # GPT-2 small's published count
    ids = torch.randint(0, GPT2_STYLE.vocab_size, (2, 30))
    with torch.no_grad():
        full = model(ids).logits
        cache = KVCache(GPT2_STYLE, batch_size=2, max_length=GPT2_STYLE.context_length)
        pieces = [model(ids[:, :10], kv_cache=cache).logits]
        pieces += [model(ids[:, t:t + 1], kv_cache=cache).logits for t in range(10, 30)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)
    # Positions matter: the same tokens in another order give other logits at the last place.
    with torch.no_grad():
        swapped = model(ids[:, [1, 0, *range(2, 30)]]).logits
    assert (swapped[:, -1] - full[:, -1]).abs().max() > 1e-4
    ids = torch.randint(0, GPT2_STYLE.vocab_size, (2, GPT2_STYLE.context_length))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.train()(ids).logits.sum().backward()
    assert counter.get_total_flops() == GPT2_STYLE.flops_per_token() * ids.numel()


def test_config_rejects_unknown_switches():
    from glassgpt.errors import GlassError

    for field, value in [("norm", "batchnorm"), ("position", "alibi"), ("mlp", "relu")]:
        with pytest.raises(GlassError, match=field):
            ModelConfig(**{field: value})


def test_grouped_query_attention_equals_repeated_key_value_heads(monkeypatch):
    # The model lets SDPA pair query heads with shared key/value heads (`enable_gqa`); the
    # reference repeats each key/value head per query head first. Same logits in the prefill,
    # a one-token decode step and a chunk after the cache, and the same gradients.
    config = CONFIGS["gqa-untied"]
    torch.manual_seed(0)
    model = GPT(config).double()
    ids = torch.randint(0, config.vocab_size, (2, 20))
    targets = torch.roll(ids, -1, dims=1)

    def run() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        model(ids, targets=targets).loss.backward()
        cache = KVCache(config, 2, 20, dtype=torch.float64)
        with torch.no_grad():
            logits = [model(ids[:, :12], kv_cache=cache).logits, model(ids[:, 12:13], kv_cache=cache).logits,
                      model(ids[:, 13:], kv_cache=cache).logits]
        return logits, [p.grad for p in model.parameters()]

    ours = run()
    sdpa = F.scaled_dot_product_attention

    def repeated(q, k, v, enable_gqa=False, **kwargs):
        groups = q.size(1) // k.size(1)
        return sdpa(q, k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1), **kwargs)

    monkeypatch.setattr(model_module.F, "scaled_dot_product_attention", repeated)
    reference = run()
    for a, b in zip(ours[0] + ours[1], reference[0] + reference[1], strict=True):
        torch.testing.assert_close(a, b, **FLOAT64)
