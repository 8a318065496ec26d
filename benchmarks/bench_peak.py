"""MFU's reference, measured three ways, next to the FLOP/s of a training step's own matmuls.

The trainer's MFU divides the model's FLOP/s, measured over logging windows of whole steps (every
interruption of the machine included), by the fp32 matmul peak `glassgpt.runtime.matmul_flops`
measures: the best single call of a 1024^3 matmul over ~0.5 s, the highest of a run's
measurements. On a shared 2-core virtual machine a single call can be much luckier than a
sustained rate, so this measures in one process, taking turns (`--repeats` rounds, the order
alternating):

- the same 1024^3 matmul called back to back for `--seconds`: its best call (the trainer's
  reference), its median call, and its sustained rate (all its FLOPs over all its time, as a
  training window counts them);
- training steps of a preset (`benchmarks.bench_shapes.step_runner`: forward with the loss,
  backward, clipping, fused AdamW; compiled where the preset trains compiled): model FLOP/s
  (`ModelConfig.flops_per_token`), and MFU against each of the three;

then one round of steps under `torch.profiler`: the FLOP/s of the step's own weight matmuls
(every `aten::mm`, `addmm` and `addmm_`: their FLOPs, from their shapes, over their time) and
the step's time in them, in attention (SDPA's kernels, and batched matmuls where SDPA falls back
to them) and in everything else. The weight matmuls' FLOPs must add up to the model's
(`ModelConfig.weight_flops_per_token`) for every token: the check that the profile counted each
of them once, or the run fails. From those shares it prints what MFU against the best call
would be if attention took no time, and if nothing but the weight matmuls did (`mfu_bounds`):
how far a faster attention, or faster everything else, could take it.

Last, the hardware's own ceiling for comparison, not as MFU's reference: what the cores' fused
multiply-add units do in float32 with nothing else in the way (`kernels/fma_peak.cpp`, a
register-only loop on every thread, built with the CPU's own instructions on first use; it needs
a C++ compiler and says why it is left out where it cannot be built). No matmul can pass it, so
it says how much of the hardware the reference matmul itself reaches.

    python benchmarks/bench_peak.py [--preset small] [--repeats 5] [--seconds 3] [--matmul auto|aten|onednn] [--quick]

`--matmul` (default auto) picks the float32 kernel as `glassgpt train --matmul` does
(`glassgpt.matmul.choose_matmul_kernel`: oneDNN where it measures faster, ~2x on the AVX-512
EPYC this was measured on): the steps train on it and the 1024^3 matmul is timed on it, so the
best call is the trainer's peak (the faster kernel's; `benchmarks/bench_matmul.py` compares the
two). On oneDNN a weight matmul is one `mkldnn::_linear_pointwise` call, counted as mm is.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `glassgpt` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glassgpt.entry import prepare_process  # noqa: E402

prepare_process(os.environ)  # before torch, as the `glassgpt` command does: MKL's fast code on AMD CPUs

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from benchmarks.bench_shapes import TOKENS_PER_STEP, step_runner  # noqa: E402
from benchmarks.common import add_matmul_option, cpu_name, fmt, markdown_table, training_kernel  # noqa: E402
from glassgpt.commands.common import positive_float, positive_int  # noqa: E402
from glassgpt.config import PRESETS  # noqa: E402
from glassgpt.runtime import (  # noqa: E402
    build_cpu_extension,
    keep_freed_memory,
    matmul_call_seconds,
    peak_matmul_size,
)

CPU = torch.device("cpu")
ONEDNN_MATMUL = "mkldnn::_linear_pointwise"  # a @ b.T: `glassgpt.matmul.onednn_mm_nt`'s one call
WEIGHT_MATMULS = ("aten::mm", "aten::addmm", "aten::addmm_", ONEDNN_MATMUL)  # a linear layer on (B, T, D) runs as mm
FMA_SOURCE = Path(__file__).resolve().parent / "kernels" / "fma_peak.cpp"


def matmul_flop_count(name: str, shapes: list[list[int]]) -> int:
    """FLOPs of one mm / addmm / oneDNN call from its input shapes (addmm's first input is the added
    matrix; oneDNN's second is (N, K), the transposed right-hand side)."""
    if name == ONEDNN_MATMUL:
        (m, k), (n, _) = shapes[:2]
        return 2 * m * k * n
    (m, k), (_, n) = shapes[1:3] if name.startswith("aten::addmm") else shapes[:2]
    return 2 * m * k * n


def mfu_bounds(mfu: float, matmul_share: float, attention_share: float) -> dict[str, float]:
    """MFU if parts of the step took no time and the rest ran as measured: the model's FLOPs stay,
    the step's time shrinks to the weight matmuls' share (and the others')."""
    return {"now": mfu, "attention free": mfu / (1 - attention_share), "only the weight matmuls": mfu / matmul_share}


@functools.cache
def fma_kernel() -> ModuleType | str:
    """The compiled FMA loop (`kernels/fma_peak.cpp`), or why it cannot be had (one line)."""
    return build_cpu_extension("glassgpt_bench_fma_peak", FMA_SOURCE, ["-O2", "-march=native", "-fopenmp"],
                               "the FMA loop")


def fma_flops(kernel: ModuleType, seconds: float) -> float:
    """The best call's float32 FLOP/s of the FMA loop on all of torch's threads, calls of ~20 ms
    for `seconds`; fails if a call's accumulators do not add up to what the loop must leave."""
    threads = torch.get_num_threads()
    flops_per_round = kernel.flops_per_iteration() * threads
    rounds, best, deadline = 1000, 0.0, time.perf_counter() + seconds
    expected = 2.0 * (flops_per_round // 2)  # each lane of each accumulator (2 FLOPs a round) ends at 2.0
    while True:
        start = time.perf_counter()
        total = kernel.fma_loop(rounds, threads, 0.5, 1.0)
        elapsed = time.perf_counter() - start
        if total != expected:
            raise SystemExit(f"bench_peak: the FMA loop left {total}, not {expected}")
        best = max(best, rounds * flops_per_round / elapsed)
        if time.perf_counter() > deadline:
            return best
        rounds = max(1000, int(rounds * 0.02 / max(elapsed, 1e-6)))  # aim at ~20 ms calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small", help="whose training step (default small)")
    parser.add_argument("--repeats", type=positive_int, default=5, help="rounds (default 5)")
    parser.add_argument("--seconds", type=positive_float, default=3.0, help="back-to-back matmuls per round (default 3)")
    add_matmul_option(parser)
    parser.add_argument("--quick", action="store_true", help="the tiny preset, short rounds (seconds; for tests)")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as `glassgpt train` does
    kernel = training_kernel(args.matmul)
    name = "tiny" if args.quick else args.preset
    config, compiled = PRESETS[name].model, PRESETS[name].train.compile == "on"
    rows = max(1, (2048 if args.quick else TOKENS_PER_STEP) // config.context_length)
    tokens_per_round = 2 * rows * config.context_length  # a round is two steps
    run = step_runner(config, compiled, tokens=rows * config.context_length, kernel=kernel)
    run()  # warm up (and compile)
    size, seconds, repeats = (256, 0.2, 1) if args.quick else (peak_matmul_size(CPU), args.seconds, args.repeats)
    flops_per_call = 2 * size**3
    best, median, sustained, model = [], [], [], []
    for r in range(repeats):
        for part in ("peak", "model") if r % 2 == 0 else ("model", "peak"):
            if part == "model":
                model.append(run() * config.flops_per_token())
                continue
            # The trainer's probe itself, run for longer and read three ways.
            durations = matmul_call_seconds(CPU, torch.float32, size, seconds, max_calls=sys.maxsize, kernel=kernel)
            best.append(flops_per_call / min(durations))
            median.append(flops_per_call / statistics.median(durations))
            sustained.append(flops_per_call * len(durations) / sum(durations))

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = time.perf_counter()
        run()
        step_seconds = time.perf_counter() - start
    matmul_seconds = attention_seconds = 0.0
    matmul_flops = 0
    for event in prof.key_averages(group_by_input_shape=True):
        if event.key in WEIGHT_MATMULS:
            matmul_flops += event.count * matmul_flop_count(event.key, event.input_shapes)
            matmul_seconds += event.self_cpu_time_total / 1e6
        elif "scaled_dot_product" in event.key or event.key == "aten::bmm":
            attention_seconds += event.self_cpu_time_total / 1e6
    expected = config.weight_flops_per_token() * tokens_per_round
    if matmul_flops != expected:
        raise SystemExit(f"bench_peak: the profiled matmuls add up to {matmul_flops:,} FLOPs, the model's weights "
                         f"to {expected:,}: a matmul was missed or counted twice")

    model_rate = statistics.median(model)
    references = [(f"{size}^3 matmul, best call ({kernel})", best),
                  (f"{size}^3 matmul, median call", median),
                  (f"{size}^3 matmul, sustained (all calls)", sustained)]
    lines = [[label, fmt(statistics.median(rates) / 1e9), f"{model_rate / statistics.median(rates):.0%}"]
             for label, rates in references]
    lines.append([f"{name}'s own weight matmuls in a step (profiler)", fmt(matmul_flops / matmul_seconds / 1e9), ""])
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, fp32 matmuls on {kernel}; {repeats} round{'s' * (repeats > 1)} of "
          f"{seconds:g} s of matmuls and two {name} training steps{' (compiled)' if compiled else ''}: model "
          f"{fmt(model_rate / 1e9)} GFLOP/s (median)\n")
    print(markdown_table(["reference", "GFLOP/s (median of rounds)", f"{name}'s MFU against it"], lines))
    other = step_seconds - matmul_seconds - attention_seconds
    print(f"\nprofiled steps: {step_seconds / 2 * 1e3:,.0f} ms each; weight matmuls {matmul_seconds / step_seconds:.0%} of the "
          f"time, attention {attention_seconds / step_seconds:.0%}, everything else {other / step_seconds:.0%}")
    bounds = mfu_bounds(model_rate / statistics.median(best), matmul_seconds / step_seconds, attention_seconds / step_seconds)
    print("MFU against the best call: " + "; ".join(f"{part} {value:.0%}" for part, value in bounds.items()))
    kernel_or_reason = fma_kernel()
    if isinstance(kernel_or_reason, str):
        print(f"\nthe cores' FMA peak: not measured: {kernel_or_reason}")
        return 0
    fma = fma_flops(kernel_or_reason, 0.2 if args.quick else 2.0)
    print(f"\nthe cores' FMA peak (a register-only float32 FMA loop, {torch.get_num_threads()} threads, best ~20 ms call): "
          f"{fmt(fma / 1e9)} GFLOP/s; the best matmul call is {statistics.median(best) / fma:.0%} of it, "
          f"{name}'s model FLOP/s {model_rate / fma:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
