"""Does letting MKL pick its code by instruction set (`glassgpt.mkl_on_amd`) make training faster?

PyTorch's CPU wheel multiplies float32 matrices with Intel's MKL, which on an AMD CPU runs its
AVX2-class code whatever the CPU has, unless a library loaded before torch answers its vendor
question (what the `glassgpt` command does first). That can only happen before torch is
imported, so two fresh worker processes compare it: "MKL held back" imports torch as it is,
"MKL let choose" calls `glassgpt.entry.prepare_process` first. Each then picks its float32
training kernel as `glassgpt train --matmul auto` would (`choose_matmul_kernel`: oneDNN where it
measures clearly faster than MKL, so usually oneDNN for the first and MKL for the second here)
and makes training steps of each preset as the trainer does (`benchmarks.bench_shapes.step_runner`:
compiled where the preset trains compiled, random tokens, AdamW). They take turns
(`benchmarks.common.interleaved`, the order alternating), two steps a turn, so a busy moment of
the machine falls on both; each also times a 1024^3 matmul on its kernel (best call of ~0.5 s)
between its turns.

On a CPU that is not AMD's, or without a C compiler, both workers run the same code, and the
header says why.

    python benchmarks/bench_mkl.py [--presets small,demo] [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
from multiprocessing.connection import Connection
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `glassgpt` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# No torch here: a spawned worker imports this module before its target runs, and one of them
# must load MKL's answer before torch.
from glassgpt.entry import prepare_process  # noqa: E402

WORKERS = {"MKL held back": False, "MKL let choose": True}


def worker(let_choose: bool, presets: list[str], compiled: dict[str, bool], conn: Connection) -> None:
    """Serve requests: "setup" (what this worker runs), "mkl" (torch.mm's best 1024^3 call, MKL's
    own rate, FLOP/s), "peak" (the trainer's MFU reference: the best call of either kernel) and
    "PRESET" (two training steps, answered with tokens/s)."""
    reason = prepare_process(os.environ) if let_choose else "held back"
    import torch

    from benchmarks.bench_shapes import step_runner
    from benchmarks.common import serve_answers
    from glassgpt.config import PRESETS
    from glassgpt.matmul import choose_matmul_kernel
    from glassgpt.mkl_on_amd import mkl_code_name
    from glassgpt.runtime import keep_freed_memory, matmul_call_seconds, matmul_flops

    keep_freed_memory()  # as `glassgpt train` does
    cpu = torch.device("cpu")
    kernel = choose_matmul_kernel("auto", cpu, torch.float32).kernel
    runners = {name: step_runner(PRESETS[name].model, compiled[name], kernel=kernel) for name in presets}
    for run in runners.values():
        run()  # warm up (and compile)
    setup = {"kernel": kernel, "code": mkl_code_name() or "none", "reason": reason or "loaded"}
    answers = {"setup": lambda: setup, "peak": lambda: matmul_flops(cpu, torch.float32, 1024, 0.5),
               "mkl": lambda: 2 * 1024**3 / min(matmul_call_seconds(cpu, torch.float32, 1024, 0.5))} | runners
    serve_answers(conn, answers)


def main(argv: list[str] | None = None) -> int:
    from glassgpt.commands.common import positive_int  # imports torch: in the parent only

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="small,demo", help="comma-separated presets (default small,demo)")
    parser.add_argument("--repeats", type=positive_int, default=5, help="turns per preset and worker (default 5)")
    parser.add_argument("--quick", action="store_true", help="the tiny preset, one turn (seconds; for tests)")
    args = parser.parse_args(argv)

    from benchmarks.common import (
        ask,
        cpu_name,
        fmt,
        interleaved_answers,
        markdown_table,
        presets_and_repeats,
        start_workers,
        stop_workers,
    )
    from glassgpt.config import PRESETS

    presets, repeats = presets_and_repeats(parser, args)
    compiled = {name: PRESETS[name].train.compile == "on" and not args.quick for name in presets}

    conns = start_workers("bench_mkl", {label: (worker, (let_choose, presets, compiled))
                                        for label, let_choose in WORKERS.items()})

    setups = {label: ask(conn, "setup") for label, conn in conns.items()}
    what = {"mkl": "torch.mm (MKL), 1024^3 best call (GFLOP/s)",
            "peak": "MFU's reference: either kernel's best call (GFLOP/s)",
            **{name: f"{name}, {'compiled' if compiled[name] else 'eager'} training step (tokens/s)" for name in presets}}
    rows, medians = [], {}
    for request, description in what.items():
        rates = interleaved_answers(conns, request, repeats)
        base = rates["MKL held back"].median
        for label, rate in rates.items():
            medians[request, label] = rate.median
            value = rate.median / 1e9 if request in ("mkl", "peak") else rate.median
            rows.append([description, label, fmt(value), f"{rate.median / base:.2f}x", f"{rate.spread:.0%}"])
    stop_workers(conns)
    print(f"{cpu_name()}, medians of {repeats} turns (2 training steps a turn); "
          + "; ".join(f"{label}: {s['reason']}, MKL runs its {s['code']} code, trains on {s['kernel']}"
                      for label, s in setups.items()) + "\n")
    print(markdown_table(["what", "worker", "median", "vs held back", "spread"], rows))
    for name in presets:  # MFU as the trainer computes it, from the medians
        print(f"\n{name}'s MFU: " + ", ".join(
            f"{label} {medians[name, label] * PRESETS[name].model.flops_per_token() / medians['peak', label]:.0%}"
            for label in conns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
