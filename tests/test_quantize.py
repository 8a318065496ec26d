"""int8 decoding: quality within 1% bits per byte of float32, greedy agreement, CLI and errors."""

from __future__ import annotations

import copy
import dataclasses
import mmap
from pathlib import Path

import pytest
import torch

from glassgpt import quantize
from glassgpt.cli import main
from glassgpt.config import ModelConfig
from glassgpt.data.corpus import builtin_documents
from glassgpt.errors import GlassError
from glassgpt.quantize import (
    METHODS,
    AVX2Int8Linear,
    FusedBlockStep,
    Int8Linear,
    avx2_kernel,
    best_method,
    compare_with_float,
    quantize_for_decoding,
    quantize_rows,
)
from glassgpt.runs import load_run

# The AVX2 kernel must build and run wherever the CPU has AVX2 (as CI's does); elsewhere it is skipped.
HAS_AVX2 = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
needs_avx2 = pytest.mark.skipif(not HAS_AVX2, reason="the CPU has no AVX2")
EVERY_METHOD = [pytest.param(m, marks=needs_avx2) if m == "avx2" else m for m in METHODS]


def _held_out_text() -> str:
    """Text the tiny run never saw: it trained on the first 120 KB of each built-in work."""
    return "\n".join(doc.text[200_000:206_000] for doc in builtin_documents())


@pytest.mark.parametrize("method", EVERY_METHOD)
def test_int8_keeps_bits_per_byte_within_one_percent(tiny_run: Path, method: str):
    run = load_run(tiny_run)
    quality = compare_with_float(run.model, run.tokenizer, _held_out_text(), method, max_tokens=2048,
                                 prompts=4, new_tokens=16)
    print(f"{method}: {quality.bpb_float:.4f} -> {quality.bpb_int8:.4f} bits per byte "
          f"({quality.bpb_change:+.3%}), greedy agreement {quality.greedy_agreement:.0%}"
          f" of {quality.greedy_tokens} tokens")
    assert abs(quality.bpb_change) < 0.01
    assert quality.greedy_tokens == 4 * 16
    assert quality.greedy_agreement >= 0.5
    assert quality.bpb_float < 6  # a trained model (random guessing over 512 tokens is ~9 bits per token)


@pytest.mark.parametrize("method", EVERY_METHOD)
def test_int8_really_is_int8_and_close_to_float(tiny_run: Path, method: str):
    run = load_run(tiny_run)
    ids = torch.tensor([[run.tokenizer.bos_id, *run.tokenizer.encode("It is a truth universally acknowledged")]])
    with torch.no_grad():
        reference = run.model(ids).logits
        model = quantize_for_decoding(run.model, method)
        logits = model(ids).logits
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert not linears, "every linear layer is quantized"
    if method in ("weight-only", "avx2"):
        assert model.lm_head.weight_int8.dtype == torch.int8
    error = (logits - reference).abs().max().item()
    assert 0 < error < 0.05 * reference.abs().max().item()


def test_weight_only_int8_linear_equals_its_dequantized_weights():
    torch.manual_seed(0)
    linear = torch.nn.Linear(40, 77)
    q = Int8Linear(linear)
    dequantized = q.weight_int8.float() * q.scale[:, None]
    assert (dequantized - linear.weight).abs().max() <= q.scale.max() / 2 + 1e-7  # rounding, nothing worse
    x = torch.randn(3, 5, 40)
    torch.testing.assert_close(q(x), x @ dequantized.T + linear.bias, atol=1e-5, rtol=0)


def test_generate_quantized_from_the_cli(tiny_run: Path, capsys):
    assert main(["generate", "--model", str(tiny_run), "--quantize", "int8", "-t", "0", "-n", "8", "The"]) == 0
    assert capsys.readouterr().out.startswith("The")
    with pytest.raises(GlassError, match="method must be one of"):
        quantize_for_decoding(load_run(tiny_run).model, "int4")


@needs_avx2
@pytest.mark.parametrize(("rows", "features", "outputs", "bias"),
                         [(1, 768, 96, True), (8, 256, 130, False), (3, 100, 37, True), (2, 31, 5, False)])
def test_avx2_kernel_equals_exact_int8_arithmetic(rows: int, features: int, outputs: int, bias: bool):
    """The kernel's int8 products are exact: only the float scales at the end may round."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(features, outputs, bias=bias)
    x = torch.randn(rows, features) * torch.linspace(0.1, 3, rows)[:, None]  # rows of different scales
    x[0, :7] = 0.5 * x[0].abs().max() / 127  # halfway cases round to even, as torch.round does
    weight_int8, weight_scale = quantize_rows(linear.weight)
    x_scale = x.abs().amax(dim=1) / 127
    x_int8 = torch.round(x / x_scale[:, None])
    expected = (x_int8.double() @ weight_int8.double().T) * x_scale.double()[:, None] * weight_scale.double()
    if bias:
        expected += linear.bias.double()
    b = linear.bias.detach() if bias else None
    y = avx2_kernel().int8_linear(x, weight_int8, weight_scale, b)
    torch.testing.assert_close(y.double(), expected, atol=1e-6, rtol=1e-6)
    relative = (y - linear(x)).norm() / linear(x).norm()  # and it is the layer, to within int8 rounding
    assert 0 < relative < 0.03


@needs_avx2
def test_avx2_layer_runs_few_rows_in_its_kernel_and_more_in_fbgemm():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    layer = AVX2Int8Linear(linear)
    few = torch.randn(1, AVX2Int8Linear.KERNEL_MAX_ROWS, 64)
    kernel = avx2_kernel().int8_linear(few, layer.weight_int8, layer.scale, layer.bias)
    torch.testing.assert_close(layer(few), kernel, atol=0, rtol=0)
    many = torch.randn(2, AVX2Int8Linear.KERNEL_MAX_ROWS, 64)
    torch.testing.assert_close(layer(many), layer.batched(many), atol=0, rtol=0)
    with torch.no_grad():
        for x in (few, many):
            assert layer(x).shape == linear(x).shape
            assert (layer(x) - linear(x)).norm() < 0.03 * linear(x).norm()


@needs_avx2
def test_int8_method_falls_back_where_the_cpu_has_no_avx2(monkeypatch):
    assert best_method() == "avx2"
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    quantize._build_kernel.cache_clear()
    try:
        heard: list[str] = []
        assert best_method(heard.append) == "dynamic"
        assert "no AVX2" in heard[-1] and "fbgemm" in heard[-1]
        with pytest.raises(GlassError, match="avx2 is not available: this CPU has no AVX2"):
            AVX2Int8Linear(torch.nn.Linear(4, 4))
    finally:
        quantize._build_kernel.cache_clear()


@needs_avx2
def test_avx2_kernel_applies_gelu_as_torch_does():
    """The fused GELU (an AVX2 e^x, the tail in scalar tanh) equals torch's tanh GELU on the same
    outputs, also far out in both tails and for output counts that are not multiples of 8."""
    torch.manual_seed(0)
    for rows, outputs in ((1, 77), (3, 130), (2, 8)):
        x = torch.randn(rows, 100) * 4
        weight_int8, scale = quantize_rows(torch.randn(outputs, 100))
        bias = torch.randn(outputs)
        plain = avx2_kernel().int8_linear(x, weight_int8, scale, bias)
        assert plain.min() < -20 and plain.max() > 20  # the tails are exercised
        fused = avx2_kernel().int8_linear(x, weight_int8, scale, bias, True)
        torch.testing.assert_close(fused, torch.nn.functional.gelu(plain, approximate="tanh"), atol=1e-6, rtol=1e-5)


@needs_avx2
def test_quantized_gpt2_mlp_folds_its_gelu_and_keeps_its_weights_in_one_aligned_buffer():
    from glassgpt.model import GPT, KVCache
    from test_model import GPT2_STYLE

    torch.manual_seed(0)
    model = quantize_for_decoding(GPT(GPT2_STYLE).eval(), "avx2")
    mlps = [block.mlp for block in model.blocks]
    assert all(m.up.gelu and isinstance(m.act, torch.nn.Identity) and not m.down.gelu for m in mlps)
    # The same model without the fold (GELU as its own module again) computes the same logits,
    # in the kernel (decoding one token) and in fbgemm (a prompt of many rows).
    unfused = copy.deepcopy(model)
    for block in unfused.blocks:
        block.mlp.up.gelu, block.mlp.act = False, torch.nn.GELU(approximate="tanh")
        block.decode_step = None  # the fused step always folds GELU: test the modules here
    ids = torch.randint(0, GPT2_STYLE.vocab_size, (1, 12))
    with torch.no_grad():
        for net in (model, unfused):
            cache = KVCache(GPT2_STYLE, 1, 16)
            net.logits = [net(ids[:, :11], kv_cache=cache).logits, net(ids[:, 11:], kv_cache=cache).logits]
    for a, b in zip(model.logits, unfused.logits, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # Every int8 weight lives in one buffer (the huge-page arena), in model order, on 64-byte lines.
    layers = [m for m in model.modules() if isinstance(m, AVX2Int8Linear)]
    storages = {layer.weight_int8.untyped_storage().data_ptr() for layer in layers}
    assert len(storages) == 1
    starts = [layer.weight_int8.data_ptr() for layer in layers]
    assert starts == sorted(starts) and all(start % 64 == 0 for start in starts)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        assert starts[0] % quantize.HUGE_PAGE == 0


@needs_avx2
def test_only_gpt2_and_llama_blocks_get_a_fused_decoding_step():
    from glassgpt.model import GPT
    from test_model import GPT2_STYLE

    for config, fused in ((GPT2_STYLE, True), (LLAMA_STYLE, True),
                          (dataclasses.replace(GPT2_STYLE, position="rope"), False),  # a mix: the modules
                          (dataclasses.replace(LLAMA_STYLE, bias=True), False)):
        model = quantize_for_decoding(GPT(config).eval(), "avx2")
        assert all(isinstance(block.decode_step, FusedBlockStep) == fused for block in model.blocks), config
    assert all(block.decode_step is None for block in quantize_for_decoding(GPT(GPT2_STYLE).eval(), "dynamic").blocks)


#: Llama's kind with grouped-query attention (2 key/value heads for 4 query heads).
LLAMA_STYLE = ModelConfig(vocab_size=300, context_length=48, n_layer=2, n_head=4, n_kv_head=2, d_model=64)


def fused_and_modules(config: ModelConfig):
    """A quantized random model whose blocks decode one token in the kernel, and a copy that runs
    its modules instead (seed 0)."""
    from glassgpt.model import GPT

    torch.manual_seed(0)
    model = quantize_for_decoding(GPT(config).eval(), "avx2")
    modules = copy.deepcopy(model)
    for block in modules.blocks:
        block.decode_step = None
    return model, modules


@needs_avx2
@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_a_block_decodes_one_token_in_one_kernel_call_as_its_modules_do(style: str):
    from glassgpt.model import KVCache
    from test_model import GPT2_STYLE

    config = GPT2_STYLE if style == "gpt2" else LLAMA_STYLE
    model, modules = fused_and_modules(config)
    ids = torch.randint(0, config.vocab_size, (1, 14))
    calls = []
    original = FusedBlockStep.__call__
    with torch.no_grad(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(FusedBlockStep, "__call__", lambda step, x, cache: calls.append(cache.position)
                      or original(step, x, cache))
        for net in (model, modules):
            cache = KVCache(config, 1, 16)
            net.logits = [net(ids[:, :8], kv_cache=cache).logits[:, -1]]  # a prompt: the modules
            net.logits += [net(ids[:, i:i + 1], kv_cache=cache).logits[:, -1] for i in range(8, 14)]
            net.cache = cache
    # Only the fused model's single tokens took the kernel: 2 blocks x 6 tokens, at positions 8-13.
    assert calls == [p for p in range(8, 14) for _ in model.blocks]
    for a, b in zip(model.logits, modules.logits, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    for layer in range(config.n_layer):  # the kernel wrote each token's key and value
        torch.testing.assert_close(model.cache.keys[layer], modules.cache.keys[layer], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.cache.values[layer], modules.cache.values[layer], atol=1e-5, rtol=1e-5)
    # Greedy decoding makes the same 30 tokens either way.
    for net in (model, modules):
        cache, net.tokens = KVCache(config, 1, 34), [1, 2, 3, 4]
        with torch.no_grad():
            logits = net(torch.tensor([net.tokens]), kv_cache=cache).logits[:, -1]
            for _ in range(30):
                net.tokens.append(int(logits.argmax()))
                logits = net(torch.tensor([net.tokens[-1:]]), kv_cache=cache).logits[:, -1]
    assert model.tokens == modules.tokens


@needs_avx2
def test_the_block_kernel_refuses_bad_tensors_with_an_error_not_a_crash():
    """Every tensor is checked before the kernel's parallel region (a throw inside one would end
    the process)."""
    from glassgpt.model import GPT, KVCache

    model = quantize_for_decoding(GPT(LLAMA_STYLE).eval(), "avx2")
    step, cache = model.blocks[0].decode_step, KVCache(LLAMA_STYLE, 1, 16)
    x = torch.randn(1, 1, LLAMA_STYLE.d_model)
    kernel = avx2_kernel()
    arguments = dict(x=x, norms=step.norms, linears=step.linears, keys=cache.keys[0], values=cache.values[0],
                     cos=step.cos, sin=step.sin, position=3, n_head=step.n_head, eps=step.eps)
    assert kernel.block_step(**arguments).shape == x.shape
    for change, message in ((dict(norms=[step.norms[0][:-1], step.norms[1]]), "norm weight"),
                            (dict(position=16), "outside the cache"),
                            (dict(linears=[step.linears[0].float(), *step.linears[1:]]), "qkv weight must be int8")):
        with pytest.raises(RuntimeError, match=message):
            kernel.block_step(**arguments | change)


@needs_avx2
@pytest.mark.parametrize("threads", [1, 3])
def test_the_block_kernel_gives_the_same_logits_with_any_number_of_threads(threads: int):
    """The kernel splits each layer's rows and the heads between its threads: one thread, or an
    odd number that splits them unevenly, must give what the modules give."""
    from glassgpt.model import KVCache

    model, modules = fused_and_modules(LLAMA_STYLE)
    ids = torch.randint(0, LLAMA_STYLE.vocab_size, (1, 12))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        logits = []
        for net in (model, modules):
            cache = KVCache(LLAMA_STYLE, 1, 16)
            with torch.no_grad():
                net(ids[:, :8], kv_cache=cache)
                logits.append(torch.cat([net(ids[:, i:i + 1], kv_cache=cache).logits[:, -1] for i in range(8, 12)]))
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(logits[0], logits[1], atol=1e-4, rtol=1e-4)
