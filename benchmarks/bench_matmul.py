"""Training's float32 matmuls on PyTorch's own kernel (MKL here) against oneDNN's.

`glassgpt.matmul` can run a training step's linear layers and its output layer's loss on oneDNN
(`glassgpt train --matmul`, default auto: oneDNN where it measures faster). This times, in one
process, interleaved (`benchmarks.common.interleaved`, the order alternating):

- every product of a preset's training step, at the step's shapes: each linear layer's forward
  (x @ W^T), input gradient (g @ W) and weight gradient (g^T @ x), and the output layer's
  logits for one loss chunk, each with `aten` (`torch.mm`'s path) and `onednn`, in GFLOP/s;
- the 1024^3 matmul MFU's peak is measured on (`glassgpt.runtime.matmul_call_seconds`), best call;
- (`--step`) whole eager fp32 training steps of each preset (`benchmarks.bench_shapes.step_runner`:
  forward with the loss, backward, clipping, fused AdamW) with the model's kernel set to each
  (`GPT.set_matmul_kernel`), after checking that both kernels give the same loss and gradients.

    python benchmarks/bench_matmul.py [--presets demo,small] [--repeats 5] [--step] [--quick]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `glassgpt` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glassgpt.entry import prepare_process  # noqa: E402

prepare_process(os.environ)  # before torch, as the `glassgpt` command does: MKL's fast code on AMD CPUs

import torch  # noqa: E402

from benchmarks.bench_shapes import step_runner  # noqa: E402
from benchmarks.common import (  # noqa: E402
    cpu_name,
    fmt,
    fmt_ratio,
    interleaved,
    markdown_table,
    preset_benchmark_args,
    ratio,
    seconds,
)
from glassgpt.config import ModelConfig, preset  # noqa: E402
from glassgpt.matmul import mm_nt, onednn_available, weight_grad  # noqa: E402
from glassgpt.model import GPT, loss_chunk_rows  # noqa: E402
from glassgpt.runtime import keep_freed_memory, matmul_call_seconds  # noqa: E402

KERNELS = ("aten", "onednn")
QUICK = ModelConfig(vocab_size=256, context_length=32, n_layer=2, n_head=2, n_kv_head=2, d_model=64)


def products(config: ModelConfig, tokens: int) -> dict[str, tuple[int, int, int]]:
    """The step's weight products as (M, K, N) of an (M, K) x (K, N) forward: one per distinct shape."""
    d, heads = config.d_model, (config.n_head + 2 * config.n_kv_head) * config.head_dim
    mlp_out = (2 if config.mlp == "swiglu" else 1) * config.mlp_hidden
    return {"qkv": (tokens, d, heads), "attention out": (tokens, config.n_head * config.head_dim, d),
            "mlp up": (tokens, d, mlp_out), "mlp down": (tokens, config.mlp_hidden, d),
            "logits (a loss chunk)": (min(tokens, loss_chunk_rows(config.vocab_size)), d, config.vocab_size)}


def product_runners(m: int, k: int, n: int, kernel: str) -> dict[str, Callable[[], float]]:
    """FLOP/s of the forward, input-gradient and weight-gradient products of one shape."""
    x, w, g = torch.randn(m, k), torch.randn(n, k), torch.randn(m, n)
    flops = 2 * m * k * n
    return {"forward": lambda: flops / seconds(lambda: mm_nt(x, w, kernel)),
            "input grad": lambda: flops / seconds(lambda: mm_nt(g, w.t(), kernel) if kernel == "onednn" else g @ w),
            "weight grad": lambda: flops / seconds(lambda: weight_grad(g, x, kernel))}


def peak_runner(n: int, kernel: str) -> Callable[[], float]:
    return lambda: 2 * n**3 / min(matmul_call_seconds(torch.device("cpu"), torch.float32, n, 0.2, 50, kernel))


def check_same_gradients(config: ModelConfig, batch: int) -> None:
    """Both kernels give one model the same loss and gradients, or the run stops."""
    torch.manual_seed(0)
    model = GPT(config)
    ids = torch.randint(0, config.vocab_size, (batch, config.context_length))
    seen = []
    for kernel in KERNELS:
        model.set_matmul_kernel(kernel)
        model.zero_grad(set_to_none=True)
        loss = model(ids, ids).loss
        loss.backward()
        seen.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = seen
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5)


def main(argv: list[str] | None = None) -> int:
    args = preset_benchmark_args(__doc__, argv, "demo,small", 5, "also time whole eager training steps",
                                 "a tiny model, 1 round (seconds; for tests)")
    if not onednn_available():
        raise SystemExit("bench_matmul: this PyTorch has no oneDNN float32 linear: nothing to compare")
    configs = {"tiny": (QUICK, 4)} if args.quick else {
        name: (preset(name).model, preset(name).train.batch_size) for name in args.presets}
    repeats = 1 if args.quick else args.repeats
    keep_freed_memory()  # as the training commands do
    torch.manual_seed(0)
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, fp32; medians of {repeats} interleaved rounds")
    n = 256 if args.quick else 1024
    peak = interleaved({kernel: peak_runner(n, kernel) for kernel in KERNELS}, repeats)
    rows = [[f"{n}^3 matmul (MFU's peak), best call", "", *(fmt(peak[k].median / 1e9) for k in KERNELS),
             fmt_ratio(ratio(peak["onednn"].median, peak["aten"].median))]]
    for name, (config, batch) in configs.items():
        for product, (m, k, n_out) in products(config, batch * config.context_length).items():
            runners = {(kind, kernel): run for kernel in KERNELS
                       for kind, run in product_runners(m, k, n_out, kernel).items()}
            for run in runners.values():  # warm up: oneDNN builds a primitive for each new shape
                run()
            rates = interleaved(runners, repeats)
            for kind in ("forward", "input grad", "weight grad"):
                aten, onednn = rates[(kind, "aten")].median, rates[(kind, "onednn")].median
                rows.append([f"{name}, {product}, {kind}", f"{m} x {k} x {n_out}", fmt(aten / 1e9), fmt(onednn / 1e9),
                             fmt_ratio(ratio(onednn, aten))])
    print(markdown_table(["product (GFLOP/s)", "M x K x N", *KERNELS, "onednn vs aten"], rows))
    if args.step:
        step_rows = []
        for name, (config, batch) in configs.items():
            check_same_gradients(config, min(batch, 4))
            runners = {kernel: step_runner(config, tokens=batch * config.context_length, kernel=kernel)
                       for kernel in KERNELS}
            for run in runners.values():  # warm up
                run()
            rates = interleaved(runners, repeats)
            step_rows.append([f"{name}, eager training step", *(f"{fmt(rates[k].median)} ({rates[k].spread:.0%})"
                                                                 for k in KERNELS),
                              fmt_ratio(ratio(rates["onednn"].median, rates["aten"].median))])
        print()
        print(markdown_table(["tokens/s (spread)", *KERNELS, "onednn vs aten"], step_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
