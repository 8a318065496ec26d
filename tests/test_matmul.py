"""Training's float32 matmul kernels: oneDNN's products equal PyTorch's, in a linear layer, in the
chunked loss and in a whole model (eager and compiled), and the choice between them."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from glassgpt import matmul
from glassgpt.config import ModelConfig, TrainConfig
from glassgpt.errors import GlassError
from glassgpt.matmul import (
    check_matmul_setting,
    choose_matmul_kernel,
    linear,
    mm_nt,
    peak_kernels,
    weight_grad,
)
from glassgpt.model import GPT, Linear
from glassgpt.runtime import matmul_flops

needs_onednn = pytest.mark.skipif(not matmul.onednn_available(), reason="this PyTorch has no oneDNN linear")
CPU = torch.device("cpu")


@needs_onednn
@pytest.mark.parametrize(("m", "k", "n"), [(37, 24, 80), (37, 80, 24), (64, 32, 32)])
def test_onednn_products_equal_float64_ones(m: int, k: int, n: int):
    """a @ b.T and a weight gradient g.T @ x (both orientations: N >= K and N < K), through strided
    (transposed) operands too, against float64."""
    torch.manual_seed(0)
    a, b, g = torch.randn(m, k), torch.randn(n, k), torch.randn(m, n)
    torch.testing.assert_close(mm_nt(a, b, "onednn").double(), a.double() @ b.double().T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mm_nt(g, b.t(), "onednn").double(), g.double() @ b.double(), rtol=1e-5, atol=1e-5)
    expected = g.double().T @ a.double()
    for kernel in ("aten", "onednn"):
        torch.testing.assert_close(weight_grad(g, a, kernel).double(), expected, rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("bias", [False, True])
def test_onednn_linear_gives_f_linears_output_and_gradients(bias: bool):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 24)
    w, b = torch.randn(40, 24), torch.randn(40) if bias else None
    grad_out = torch.randn(3, 5, 40)
    results = []
    for kernel in ("aten", "onednn"):
        leaves = [t.clone().requires_grad_() for t in (x, w)] + ([b.clone().requires_grad_()] if bias else [None])
        out = linear(*leaves, kernel)
        out.backward(grad_out)
        results.append([out.detach()] + [t.grad for t in leaves if t is not None])
    for ours, theirs in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_onednn_is_only_used_where_gradients_are_on_in_float32(monkeypatch: pytest.MonkeyPatch):
    """Evaluation and generation (no_grad) and bf16 keep PyTorch's path, whatever the kernel."""
    calls = []
    monkeypatch.setattr(matmul._OneDnnLinear, "apply", lambda *args: calls.append(args) or F.linear(*args))
    x, w = torch.randn(2, 8), torch.randn(4, 8)
    with torch.no_grad():
        linear(x, w, None, "onednn")
    linear(x.bfloat16(), w.bfloat16(), None, "onednn")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        linear(x, w, None, "onednn")
    linear(x, w, None, "aten")
    assert calls == []
    linear(x, w, None, "onednn")
    assert len(calls) == 1


TIED = ModelConfig(vocab_size=96, context_length=16, n_layer=2, n_head=4, n_kv_head=2, d_model=32)


@needs_onednn
@pytest.mark.parametrize("config", [TIED, dataclasses.replace(TIED, tie_embeddings=False, bias=True)],
                         ids=["tied", "untied with biases"])
def test_a_model_trained_on_onednn_gets_the_same_loss_and_gradients(config: ModelConfig):
    """Every linear layer and the chunked loss (here in 2 chunks, some targets ignored) on oneDNN."""
    torch.manual_seed(0)
    model = GPT(config)
    ids = torch.randint(0, config.vocab_size, (3, config.context_length))
    targets = ids.roll(-1, dims=1)
    targets[0, :5] = -1
    assert model.matmul_kernel == "aten" and all(m.matmul_kernel == "aten" for m in model.modules()
                                                 if isinstance(m, Linear))
    seen = []
    for kernel in ("aten", "onednn"):
        model.set_matmul_kernel(kernel)
        model.zero_grad(set_to_none=True)
        loss = model(ids, targets).loss
        loss.backward()
        seen.append((loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}))
    (loss_aten, grads_aten), (loss_onednn, grads_onednn) = seen
    torch.testing.assert_close(loss_onednn, loss_aten, rtol=1e-6, atol=1e-6)
    for name, grad in grads_aten.items():
        torch.testing.assert_close(grads_onednn[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@needs_onednn
def test_a_compiled_model_trains_on_onednn_as_eager_does():
    """torch.compile calls the oneDNN product as one opaque operator (Inductor could not lower it)."""
    torch.manual_seed(0)
    model = GPT(TIED)
    model.set_matmul_kernel("onednn")
    ids = torch.randint(0, TIED.vocab_size, (2, TIED.context_length))
    eager = model(ids, ids).loss
    eager.backward()
    eager_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    compiled = torch.compile(model)(ids, ids).loss
    compiled.backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, eager_grads[name], rtol=1e-4, atol=1e-5, msg=name)


def test_the_kernel_choice(monkeypatch: pytest.MonkeyPatch):
    assert choose_matmul_kernel("aten", CPU, torch.float32).kernel == "aten"
    assert choose_matmul_kernel("auto", CPU, torch.bfloat16).kernel == "aten"  # bf16 is oneDNN's already
    # --dtype auto that resolved to bf16: "onednn" has nothing to do; an explicit bf16 is refused up front.
    assert choose_matmul_kernel("onednn", CPU, torch.bfloat16).kernel == "aten"
    for device, dtype_setting in [(CPU, "bf16"), (torch.device("cuda"), "auto")]:
        with pytest.raises(GlassError, match="--dtype fp32"):
            check_matmul_setting("onednn", device, dtype_setting)
    check_matmul_setting("onednn", CPU, "auto")
    check_matmul_setting("auto", torch.device("cuda"), "bf16")
    with pytest.raises(GlassError, match="matmul must be one of"):
        choose_matmul_kernel("mkl", CPU, torch.float32)
    monkeypatch.setattr(matmul, "onednn_available", lambda: True)
    # "auto" goes by the measurement: 2.2x with AVX-512 here, ~1.17x with oneDNN held to AVX2.
    for speedup, kernel in [(2.2, "onednn"), (1.17, "onednn"), (1.02, "aten")]:
        monkeypatch.setattr(matmul, "onednn_speedup", lambda speedup=speedup: speedup)
        choice = choose_matmul_kernel("auto", CPU, torch.float32)
        assert choice.kernel == kernel and f"{speedup:.1f}" in choice.reason
    monkeypatch.setattr(matmul, "onednn_available", lambda: False)
    assert choose_matmul_kernel("auto", CPU, torch.float32).kernel == "aten"
    with pytest.raises(GlassError, match="no oneDNN"):
        choose_matmul_kernel("onednn", CPU, torch.float32)
    with pytest.raises(GlassError, match="matmul must be one of"):
        TrainConfig(matmul="mkl")


@needs_onednn
def test_the_peak_is_the_fastest_kernels(monkeypatch: pytest.MonkeyPatch):
    """MFU's reference takes every kernel that can multiply float32 here, and keeps the best."""
    assert peak_kernels(CPU, torch.float32) == ("aten", "onednn")
    assert peak_kernels(CPU, torch.bfloat16) == ("aten",)
    rates = {"aten": 1.0, "onednn": 0.25}  # seconds per call: oneDNN 4x faster

    def fake_calls(device, dtype, n, min_seconds, max_calls, kernel):
        return [rates[kernel]]

    monkeypatch.setattr("glassgpt.runtime.matmul_call_seconds", fake_calls)
    assert matmul_flops(CPU, torch.float32, n=10) == 2 * 10**3 / 0.25
