"""Would keeping freed memory in the C library's malloc make training steps faster?

A training step frees and allocates the same large activations every step. glibc's malloc
serves blocks over its mmap threshold (adapting up to 32 MB) with fresh pages from the OS and
gives them back on free, so a step pays again for faulting in and zeroing that memory: alone, a
matmul writing the `small` preset's 58 MB MLP activation ran at ~110 GFLOP/s into fresh memory
and ~185 into reused memory. `keep_freed_memory` turns mmap and trimming off (glibc's
`mallopt`), so freed blocks stay in the heap for the next step.

Two worker processes build the same models from the same seed; one calls `keep_freed_memory()`
first, the other keeps glibc's default malloc. A process cannot
go back to the defaults once changed, hence two. They take turns (`benchmarks.common.interleaved`,
the order alternating), each turn two training steps as the trainer makes them
(`benchmarks.bench_shapes.step_runner`: forward with the loss, backward, clipping at 1.0, fused
AdamW; fp32, random tokens, the float32 kernel picked once as `glassgpt train --matmul` picks it),
and report tokens/s and the page faults a step took.

`--huge-pages` adds a third worker that keeps freed memory and also asks for transparent huge
pages (PyTorch's own switch, `THP_MEM_ALLOC_ENABLE=1`: blocks of 2 MB and more aligned to 2 MB
and `madvise`d), for fewer TLB misses on the large activations.

    python benchmarks/bench_allocator.py [--presets small,demo] [--repeats 5] [--compile off|on] [--huge-pages]
        [--matmul auto|aten|onednn] [--quick]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from multiprocessing.connection import Connection
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `glassgpt` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glassgpt.entry import prepare_process  # noqa: E402

prepare_process(os.environ)  # before torch, as the `glassgpt` command does: MKL's fast code on AMD CPUs

import torch  # noqa: E402

from benchmarks.bench_shapes import step_runner  # noqa: E402
from benchmarks.common import (  # noqa: E402
    Rate,
    add_matmul_option,
    cpu_name,
    fmt,
    interleaved,
    markdown_table,
    presets_and_repeats,
    start_workers,
    stop_workers,
    training_kernel,
)
from glassgpt.commands.common import positive_int  # noqa: E402
from glassgpt.config import PRESETS  # noqa: E402
from glassgpt.runtime import keep_freed_memory  # noqa: E402

ROWS = 32  # sequences per step, as the presets train


def page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def huge_page_kb() -> int:
    """Anonymous memory of this process in transparent huge pages, in kB (0 if unknown)."""
    try:
        with open("/proc/self/smaps_rollup", encoding="utf-8") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("AnonHugePages:")), 0)
    except OSError:
        return 0


def worker(keep: bool, huge_pages: bool, presets: list[str], rows: int, compiled: bool, kernel: str,
           conn: Connection) -> None:
    """Serve "run PRESET" requests: two training steps, answered with (tokens/s, faults a step)."""
    if keep and not keep_freed_memory():
        conn.send(("error", "this C library is not glibc: nothing to compare"))
        return
    if huge_pages:  # read by PyTorch's CPU allocator at its allocations, so before the models
        os.environ["THP_MEM_ALLOC_ENABLE"] = "1"
    runners = {}
    for name in presets:
        config = PRESETS[name].model
        runners[name] = step_runner(config, compiled, tokens=rows * config.context_length, kernel=kernel)
        runners[name]()  # warm up: the first steps allocate the optimizer state and fill the heap
    if huge_pages and huge_page_kb() == 0:
        conn.send(("error", "the kernel gave no transparent huge pages (/sys/kernel/mm/transparent_hugepage/enabled "
                            "is 'never'?): nothing to compare"))
        return
    conn.send(("ready", None))
    while (name := conn.recv()) is not None:
        faults = page_faults()
        tokens_per_s = runners[name]()  # two steps
        conn.send(("rate", (tokens_per_s, (page_faults() - faults) / 2)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="small,demo", help="comma-separated presets (default small,demo)")
    parser.add_argument("--repeats", type=positive_int, default=5, help="turns per preset and allocator (default 5)")
    parser.add_argument("--compile", choices=("off", "on"), default="off",
                        help="time the steps eager (off, default) or under torch.compile (on, as `small` trains)")
    parser.add_argument("--huge-pages", action="store_true",
                        help="also time keeping freed memory with transparent huge pages")
    add_matmul_option(parser)
    parser.add_argument("--quick", action="store_true", help="the tiny preset, one turn (seconds; for tests)")
    args = parser.parse_args(argv)
    kernel = training_kernel(args.matmul)  # once, for every worker
    presets, repeats = presets_and_repeats(parser, args)

    # Fresh processes: glibc's malloc as it starts.
    workers = {"default malloc": (False, False), "keep freed memory": (True, False)}  # label: (keep, huge pages)
    if args.huge_pages:
        workers["keep + huge pages"] = (True, True)
    conns = start_workers("bench_allocator", {
        label: (worker, (keep, huge_pages, presets, ROWS, args.compile == "on", kernel))
        for label, (keep, huge_pages) in workers.items()})

    faults: dict[tuple[str, str], Rate] = {}
    lines = []
    for name in presets:
        def turn(label: str, name: str = name) -> float:
            conns[label].send(name)
            _, (rate, step_faults) = conns[label].recv()
            faults.setdefault((name, label), Rate()).samples.append(step_faults)
            return rate

        rates = interleaved({label: (lambda label=label: turn(label)) for label in conns}, repeats)
        base = rates["default malloc"].median
        for label, rate in rates.items():
            lines.append([name, label, fmt(rate.median), f"{rate.median / base:.2f}x",
                          fmt(faults[name, label].median), f"{rate.spread:.0%}"])
    stop_workers(conns)
    mode = "compiled" if args.compile == "on" else "eager"
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, fp32 matmuls on {kernel}, {mode}, {ROWS} sequences a step, "
          f"medians of {repeats} turns of 2 steps\n")
    print(markdown_table(["preset", "malloc", "tokens/s", "vs default", "page faults a step", "spread"], lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
