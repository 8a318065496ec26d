"""Chunk size of the training loss: the output layer and cross-entropy, forward + backward.

Times, interleaved in one run (`benchmarks.common.interleaved`: the order alternates between
repeats), the old full-logits path `F.cross_entropy((h @ W.T).float(), targets,
ignore_index=-1)` against `ChunkedCrossEntropy` (what `GPT.forward` uses with targets) at
several chunk sizes, on random fp32 hidden states h (B*T, D) and a random output matrix W
(V, D), at the shapes of two presets, `demo` and `small` (a batch's tokens B*T, D and V from the
preset: 4096 x 192 x 8192 and 8192 x 384 x 8192 today). Each variant's loss and gradients are checked against the
full-logits ones first. `--step` also times a whole forward + backward of the demo model, with
the full logits and with each chunk size (~30 s more on a quiet machine).

    python benchmarks/bench_loss_chunks.py [--rows 1024,2048,4096] [--shapes demo,small] [--repeats 5] [--step]

Printed: the median and the fastest repeat, each with its ratio to the full-logits path
(below 1: faster). About 40 s on a quiet 2-core CPU. When other processes share the cores a
repeat can take several times longer (every parallel kernel waits for a descheduled thread),
the medians move by 10-20% from run to run, and larger chunks (fewer, bigger kernels) gain
relative to smaller ones; the fastest repeat is the least disturbed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `glassgpt` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glassgpt.entry import prepare_process  # noqa: E402

prepare_process(os.environ)  # before torch, as the `glassgpt` command does: MKL's fast code on AMD CPUs

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.common import interleaved, seconds  # noqa: E402
from glassgpt import model as model_module  # noqa: E402
from glassgpt.config import preset  # noqa: E402
from glassgpt.model import GPT, ChunkedCrossEntropy  # noqa: E402
from glassgpt.runtime import keep_freed_memory  # noqa: E402

SHAPES = {name: (preset(name).train.batch_size * preset(name).model.context_length, preset(name).model.d_model,
                 preset(name).model.vocab_size) for name in ("demo", "small")}  # name: (B*T, D, V)
FULL = "full logits"


def full_logits_loss(h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy((h @ w.t()).float(), targets, ignore_index=-1)


def time_steps(steps: dict[str, Callable[[], torch.Tensor]], params: list[torch.Tensor],
               repeats: int, warm_up: bool = True) -> dict[str, list[float]]:
    """Milliseconds of loss + backward of each step in every repeat, interleaved (after one untimed run)."""

    def run(step: Callable[[], torch.Tensor]) -> None:
        for p in params:
            p.grad = None
        step().backward()

    for step in steps.values() if warm_up else ():
        run(step)
    rates = interleaved({name: (lambda s=step: 1.0 / seconds(lambda: run(s))) for name, step in steps.items()},
                        repeats)
    return {name: [1000.0 / r for r in rate.samples] for name, rate in rates.items()}


def check(steps: dict[str, Callable[[], torch.Tensor]], params: list[torch.Tensor]) -> None:
    """Every variant's loss and gradients equal the full-logits ones (fp32 rounding aside)."""
    results = {}
    for name, step in steps.items():
        for p in params:
            p.grad = None
        loss = step()
        loss.backward()
        results[name] = [loss.detach()] + [p.grad.clone() for p in params]
    for name, got in results.items():
        for a, b in zip(got, results[FULL], strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def print_table(title: str, ms: dict[str, list[float]]) -> None:
    """Median and fastest repeat, each also as a ratio to the full-logits path's.

    On a shared machine a repeat that other processes slowed down can be several times slower;
    the fastest repeat is the least disturbed one.
    """
    median = {name: statistics.median(values) for name, values in ms.items()}
    fastest = {name: min(values) for name, values in ms.items()}
    print(f"\n{title}")
    print(f"  {'':>16}  {'median':>9}  {'ratio':>6}  {'fastest':>9}  {'ratio':>6}")
    for name in ms:
        print(f"  {name:>16}  {median[name]:6.1f} ms  x{median[name] / median[FULL]:.3f}"
              f"  {fastest[name]:6.1f} ms  x{fastest[name] / fastest[FULL]:.3f}")


def bench_loss(name: str, rows: list[int], repeats: int) -> None:
    n, d, v = SHAPES[name]
    torch.manual_seed(0)
    h = torch.randn(n, d, requires_grad=True)
    w = (0.02 * torch.randn(v, d)).requires_grad_()
    targets = torch.randint(0, v, (n,))
    targets[::97] = -1  # a few ignored positions, as the training data may have
    steps: dict[str, Callable[[], torch.Tensor]] = {FULL: lambda: full_logits_loss(h, w, targets)}
    for r in rows:
        steps[f"chunks of {r}"] = lambda r=r: ChunkedCrossEntropy.apply(h, w, targets, r, True)
    check(steps, [h, w])  # also the warm-up
    print_table(f"{name}: B*T={n}, D={d}, V={v}: output layer + loss, forward + backward ({repeats} repeats)",
                time_steps(steps, [h, w], repeats, warm_up=False))


def bench_step(rows: list[int], repeats: int) -> None:
    """A whole demo-model forward + backward: logits then F.cross_entropy, vs GPT's own loss."""
    config = preset("demo")
    torch.manual_seed(0)
    model = GPT(config.model)
    ids = torch.randint(0, config.model.vocab_size, (config.train.batch_size, config.model.context_length))
    targets = torch.roll(ids, -1, dims=1)

    def chunked_loss(r: int) -> torch.Tensor:
        default, model_module.LOSS_CHUNK_LOGITS = model_module.LOSS_CHUNK_LOGITS, r * config.model.vocab_size
        try:
            return model(ids, targets=targets).loss
        finally:
            model_module.LOSS_CHUNK_LOGITS = default

    steps = {FULL: lambda: F.cross_entropy(model(ids).logits.float().flatten(0, 1), targets.flatten(), ignore_index=-1)}
    for r in rows:
        steps[f"chunks of {r}"] = lambda r=r: chunked_loss(r)
    print_table(f"demo model: forward + backward of one {ids.numel()}-token batch ({repeats} repeats)",
                time_steps(steps, list(model.parameters()), repeats))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1024,2048,4096", help="chunk sizes to time, comma-separated")
    parser.add_argument("--shapes", default="demo,small", help=f"of {', '.join(SHAPES)}, comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (small: two fewer, at least 1)")
    parser.add_argument("--step", action="store_true", help="also time a whole demo-model forward + backward")
    args = parser.parse_args(argv)
    rows = [int(r) for r in args.rows.split(",")]
    keep_freed_memory()  # as the training commands do: large chunks' logits are not faulted in afresh
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"GPT's loss takes {model_module.LOSS_CHUNK_LOGITS:,} logits a chunk "
          f"({model_module.loss_chunk_rows(preset('small').model.vocab_size):,} rows at the presets' vocabulary)")
    for name in args.shapes.split(","):
        bench_loss(name, rows, args.repeats if name == "demo" else max(1, args.repeats - 2))
    if args.step:
        bench_step(rows, args.repeats)


if __name__ == "__main__":
    main()
