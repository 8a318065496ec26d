"""Which shape of a ~10M-parameter model trains fastest on this CPU, and at what MFU?

The `small` preset (4 layers, d_model 384, 3 heads of 128, context 256) against other shapes of
about as many parameters and against the earlier `small` shape (6 x 320, 5 heads of 64) built
as GPT-2 (the reference the MFU target was set by), each a full training step as the trainer
makes it: forward with the loss, backward, gradient clipping at 1.0 and fused AdamW, on the same number of tokens (32 x 256
random tokens), with malloc keeping freed memory as the training commands make it
(`glassgpt.runtime.keep_freed_memory`). Steps of all shapes are interleaved
(`benchmarks.common.interleaved`, the order alternating), and the fp32 matmul peak (the
trainer's reference, `glassgpt.runtime.matmul_flops`) is measured between rounds too: on a
shared machine the peak moves as much as the steps do (139-186 GFLOP/s in one afternoon here),
so MFU is the median step rate against the median peak.

    python benchmarks/bench_shapes.py [--repeats 3] [--compile off|on|both] [--matmul auto|aten|onednn] [--quick]

`--compile both` times every shape eager and under `torch.compile` (compiled in the warm-up
round: the compile time is not in the rates). `--matmul` (default auto) picks the float32 kernel
the steps train on as `glassgpt train --matmul` does (`glassgpt.matmul.choose_matmul_kernel`).

This measures speed only. Whether a faster shape also learns as much per minute takes training
runs of the preset's length (hours for `small`), which `glassgpt train --preset small --layers N
--d-model D --heads H --kv-heads H --time-budget M` makes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `glassgpt` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glassgpt.entry import prepare_process  # noqa: E402

prepare_process(os.environ)  # before torch, as the `glassgpt` command does: MKL's fast code on AMD CPUs

import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    add_matmul_option,
    cpu_name,
    fmt,
    interleaved,
    markdown_table,
    matmul_gflops,
    training_kernel,
)
from glassgpt.commands.common import positive_int  # noqa: E402
from glassgpt.config import PRESETS, ModelConfig  # noqa: E402
from glassgpt.model import GPT  # noqa: E402
from glassgpt.runtime import keep_freed_memory  # noqa: E402

TOKENS_PER_STEP = 32 * 256


def shapes(quick: bool) -> dict[str, ModelConfig]:
    base = PRESETS["small"].model

    def shape(layers: int, width: int, heads: int, context: int = 256, **more) -> ModelConfig:
        """The preset with this shape, its MLP at the default width for `width` (mlp_hidden 0)."""
        return dataclasses.replace(base, n_layer=layers, d_model=width, n_head=heads, n_kv_head=heads,
                                   context_length=context, mlp_hidden=0, **more)

    if quick:  # seconds: the same code on tiny models
        return {"base": shape(6, 64, 2, 64, vocab_size=512), "wider": shape(4, 96, 3, 64, vocab_size=512)}

    return {
        f"small ({base.n_layer} x {base.d_model}, {base.n_head} heads of {base.head_dim})": base,
        "6 x 320, 5 heads (small until December 2026)": shape(6, 320, 5),
        "4 x 384, 6 heads": shape(4, 384, 6),
        "3 x 448, 7 heads": shape(3, 448, 7),
        "4 x 384, 6 heads, context 128": shape(4, 384, 6, 128),
        # The issue's reference for "plain": the earlier small shape with GPT-2's switches
        # (LayerNorm, GELU at 4 x d_model, biases, learned positions; heads of 64 as GPT-2's),
        # the same kernels otherwise.
        "GPT-2 style (6 x 320, 5 heads)": shape(6, 320, 5, norm="layernorm", mlp="gelu", bias=True,
                                                position="learned"),
    }


def step_runner(config: ModelConfig, compiled: bool = False, tokens: int = TOKENS_PER_STEP,
                kernel: str = "aten") -> Callable[[], float]:
    """A function that makes two training steps of `tokens` random tokens each (rounded to whole
    windows) and returns their tokens/s; the model's float32 matmuls on `kernel` (`GPT.set_matmul_kernel`)."""
    torch.manual_seed(0)
    model = GPT(config)
    model.set_matmul_kernel(kernel)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    forward = torch.compile(model) if compiled else model
    rows = max(1, tokens // config.context_length)
    ids = torch.randint(0, config.vocab_size, (rows, config.context_length))
    targets = torch.randint(0, config.vocab_size, (rows, config.context_length))

    def run() -> float:
        start = time.perf_counter()
        for _ in range(2):
            forward(ids, targets).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return 2 * ids.numel() / (time.perf_counter() - start)

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=positive_int, default=3, help="rounds of steps (default 3; 2 steps per round)")
    parser.add_argument("--compile", choices=("off", "on", "both"), default="off",
                        help="time the shapes eager (off, default), under torch.compile (on), or both")
    add_matmul_option(parser)
    parser.add_argument("--quick", action="store_true", help="tiny models, one round (seconds; for tests)")
    args = parser.parse_args(argv)
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    keep_freed_memory()  # as `glassgpt train` does
    kernel = training_kernel(args.matmul)
    configs = {f"{name}, compiled" if compiled else name: (config, compiled)
               for name, config in shapes(args.quick).items() for compiled in modes}
    runners = {name: step_runner(config, compiled, kernel=kernel) for name, (config, compiled) in configs.items()}
    for run in runners.values():  # warm up: allocator, thread pool, first-step work
        run()
    size, seconds = (512, 0.1) if args.quick else (1024, 0.5)
    runners["peak"] = lambda: matmul_gflops(size, torch.float32, seconds) * 1e9  # FLOP/s, between the steps
    rates = interleaved(runners, 1 if args.quick else args.repeats)
    peak = rates.pop("peak")
    base = next(iter(rates.values())).median
    lines = []
    for name, rate in rates.items():
        config = configs[name][0]
        flops = rate.median * config.flops_per_token()
        lines.append([name, f"{config.num_parameters() / 1e6:.1f}M", fmt(rate.median), f"{rate.median / base:.2f}x",
                      fmt(flops / 1e9), f"{flops / peak.median:.0%}", f"{rate.spread:.0%}"])
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, fp32 matmuls on {kernel}, {TOKENS_PER_STEP:,} tokens a step; matmul peak median {peak.median / 1e9:.0f} GFLOP/s "
          f"(range {min(peak.samples) / 1e9:.0f}-{max(peak.samples) / 1e9:.0f})\n")
    print(markdown_table(["shape (layers x d_model)", "params", "tokens/s", "vs first", "GFLOP/s", "MFU",
                          "spread"], lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
