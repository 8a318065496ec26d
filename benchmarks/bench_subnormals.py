"""Subnormal floats: how much they slow this CPU down, and whether training ever makes them.

A float32 below 1.2e-38 is subnormal, and many CPUs take a slow path for every operation that
reads or makes one (on the 2-core Intel Xeon this was written on, a product with ~20% of them in
one input ran ~40x slower). `torch.set_flush_denormal(True)` sets the CPU to treat them as zero,
but only for the thread that calls it: OpenMP's worker threads copy the setting when they are
started, so it must come before torch's first parallel op. So two fresh worker processes
compare, taking turns (`benchmarks.common.interleaved`, the order alternating):
"subnormals kept" (as torch starts) and "flushed to zero" (set before anything else runs), each
timing

- the loss's gradient product in `glassgpt.model.ChunkedCrossEntropy`, p @ W for a chunk of
  4,096 rows at `small`'s shape (8,192-token vocabulary, d_model 384), with p the softmax of
  logits spread wide enough (standard deviation `--spread`, 20 by default) that many p are
  subnormal, and
- that softmax itself.

Then the question that decides whether glassgpt should flush them: do a real model's loss
probabilities contain any? For each `--model` run folder (default: the base model that ships
with glassgpt), the softmax of its logits on windows of the built-in validation text: the
logits' range per position, and the share of subnormal probabilities.

    python benchmarks/bench_subnormals.py [--repeats 5] [--spread 20] [--model RUN ...] [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from multiprocessing.connection import Connection
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `glassgpt` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# No torch here: a spawned worker imports this module before its target runs, and one of them
# must set the flag before torch starts its threads.
from glassgpt.entry import prepare_process  # noqa: E402

WORKERS = {"subnormals kept": False, "flushed to zero": True}


def worker(flush: bool, rows: int, vocab: int, width: int, spread: float, conn: Connection) -> None:
    """Serve requests: "setup" (the share of subnormal p), "product" (p @ W, GFLOP/s) and
    "softmax" (softmax of the logits, millions of elements a second)."""
    prepare_process(os.environ)
    import torch

    torch.set_flush_denormal(flush)  # before any op: the OpenMP threads started later inherit it

    from benchmarks.common import seconds, serve_answers
    from glassgpt.runtime import keep_freed_memory

    keep_freed_memory()  # as `glassgpt train` does
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, vocab, generator=generator) * spread
    weight = torch.randn(vocab, width, generator=generator)
    p = torch.softmax(logits, dim=-1)
    share = subnormal_share(p)

    def best_seconds(fn) -> float:
        fn()  # warm up
        return min(seconds(fn) for _ in range(3))

    answers = {"setup": lambda: share,
               "product": lambda: 2 * rows * vocab * width / best_seconds(lambda: p @ weight) / 1e9,
               "softmax": lambda: rows * vocab / best_seconds(lambda: torch.softmax(logits, dim=-1)) / 1e6}
    serve_answers(conn, answers)


def subnormal_share(p) -> float:
    """The share of `p`'s float32 values that are subnormal: nonzero, below the smallest normal."""
    import torch

    return ((p > 0) & (p < torch.finfo(torch.float32).tiny)).float().mean().item()


def subnormals_in_model(path: Path | None, windows: int) -> tuple[str, float, float, float]:
    """(name, mean and largest logit range per position, share of subnormal probabilities) of the
    model in `path` (None: the shipped base) on `windows` windows of the built-in validation text."""
    import torch

    from glassgpt.data.corpus import builtin_documents, split_documents
    from glassgpt.runs import load_run, shipped_model

    folder = path or shipped_model()
    if folder is None:
        raise SystemExit("bench_subnormals: this install has no shipped model: pass --model RUN")
    run = load_run(folder)
    context = run.config.model.context_length
    text = "\n".join(doc.text for doc in split_documents(builtin_documents()).val)
    ids = run.tokenizer.encode(text)[:windows * context]
    if len(ids) < windows * context:
        raise SystemExit(f"bench_subnormals: the validation text is too short for {windows} windows")
    with torch.no_grad():
        logits = run.model(torch.tensor(ids).view(windows, context)).logits.float()
    spans = logits.amax(-1) - logits.amin(-1)
    share = subnormal_share(torch.softmax(logits, dim=-1))
    return str(path or "the shipped base"), spans.mean().item(), spans.max().item(), share


def main(argv: list[str] | None = None) -> int:
    from glassgpt.commands.common import positive_int  # imports torch: in the parent only

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=positive_int, default=5, help="turns per worker (default 5)")
    parser.add_argument("--spread", type=float, default=20.0,
                        help="standard deviation of the synthetic logits (default 20: ~20%% of p subnormal)")
    parser.add_argument("--model", action="append", type=Path, default=None,
                        help="a run folder to check for subnormal probabilities (repeatable; default: the shipped base)")
    parser.add_argument("--quick", action="store_true", help="small shapes, one turn (seconds; for tests)")
    args = parser.parse_args(argv)
    if args.spread <= 0:
        parser.error(f"--spread must be positive, got {args.spread}")
    from glassgpt.runs import RunFolder

    for path in args.model or []:  # before minutes of timing, not after
        if not RunFolder(path).is_run():
            parser.error(f"--model {path} is not a run folder (one that `glassgpt train --out` wrote)")

    from benchmarks.common import (
        ask,
        cpu_name,
        fmt,
        interleaved_answers,
        markdown_table,
        start_workers,
        stop_workers,
    )

    rows, vocab, width = (256, 1024, 64) if args.quick else (4096, 8192, 384)
    repeats = 1 if args.quick else args.repeats
    conns = start_workers("bench_subnormals", {label: (worker, (flush, rows, vocab, width, args.spread))
                                               for label, flush in WORKERS.items()})

    shares = {label: ask(conn, "setup") for label, conn in conns.items()}
    what = {"product": f"p @ W, ({rows:,} x {vocab:,}) x ({vocab:,} x {width}) (GFLOP/s)",
            "softmax": f"softmax of ({rows:,} x {vocab:,}) logits (million elements/s)"}
    table = []
    for request, description in what.items():
        rates = interleaved_answers(conns, request, repeats)
        base = rates["subnormals kept"].median
        for label, rate in rates.items():
            table.append([description, label, fmt(rate.median), f"{rate.median / base:.2f}x", f"{rate.spread:.0%}"])
    stop_workers(conns)
    print(f"{cpu_name()}, medians of {repeats} turns (best of 3 calls a turn); logits with standard deviation "
          f"{args.spread:g}: {shares['subnormals kept']:.1%} of p subnormal where kept, "
          f"{shares['flushed to zero']:.1%} where flushed\n")
    print(markdown_table(["what", "worker", "median", "vs kept", "spread"], table))

    import torch

    from glassgpt.errors import GlassError

    tiny = torch.finfo(torch.float32).tiny  # the smallest normal float32
    windows = 2 if args.quick else 16
    try:
        found = [subnormals_in_model(path, windows) for path in (args.model or [None])]
    except GlassError as err:  # a run folder whose weights or tokenizer do not load
        raise SystemExit(f"bench_subnormals: {err}") from None
    print(f"\nA real model's loss probabilities, {windows} windows of the built-in validation text:\n")
    print(markdown_table(["model", "logit range a position (mean)", "largest", "subnormal p"],
                         [[name, f"{mean:.1f}", f"{largest:.1f}", f"{share:.2%}"]
                          for name, mean, largest, share in found]))
    print(f"\n(p = exp(logit - max) / sum is at least exp(-range) / V, so a position's softmax can only make a "
          f"subnormal if its logit range passes -ln({tiny:.2e}) - ln V: "
          f"{-math.log(tiny) - math.log(8192):.0f} at an 8,192-token vocabulary)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
