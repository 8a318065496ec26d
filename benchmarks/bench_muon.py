"""Muon's Newton-Schulz with a group's same-shaped matrices stacked (or on oneDNN), against one matrix at a time.

`glassgpt.train.optim.Muon` orthogonalises the matrices of one parameter group that share a shape
(the same projection of every block) as one stack, with batched matmuls; the arithmetic of each
matrix is unchanged (its own norm, its own iteration). This times, interleaved in one process
(`benchmarks.common.interleaved`, the order alternating), for a preset's hidden matrices with
random gradients:

- `alone`: the same optimizer with each matrix in a parameter group of its own (nothing is
  stacked: how it stepped before);
- `stacked`: every hidden matrix in one group, as `make_optimizer` builds it;
- `onednn`: the same, with the iteration's products on oneDNN one matrix at a time
  (`glassgpt.train.optim.set_matmul_kernel`, as training sets it where oneDNN's float32 matmul
  is the faster; left out where this PyTorch has none); the model's own matmuls stay on
  PyTorch's kernel in all three;

first Muon's step by itself, then (`--step`) whole eager fp32 training steps of the preset with
its own recipe (forward with the loss, backward, clipping, AdamW + Muon), the way the demo trains.
All first take the same steps from the same weights, which must end equal (to float32
rounding) or the run fails.

    python benchmarks/bench_muon.py [--presets demo,small] [--repeats 15] [--step] [--quick]
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `glassgpt` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glassgpt.entry import prepare_process  # noqa: E402

prepare_process(os.environ)  # before torch, as the `glassgpt` command does: MKL's fast code on AMD CPUs

import torch  # noqa: E402

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
from glassgpt.config import ModelConfig, RunConfig, preset  # noqa: E402
from glassgpt.matmul import onednn_available  # noqa: E402
from glassgpt.model import GPT  # noqa: E402
from glassgpt.runtime import keep_freed_memory  # noqa: E402
from glassgpt.train.optim import CombinedOptimizer, Muon, make_optimizer, set_matmul_kernel  # noqa: E402

VARIANTS = ("alone", "stacked", "onednn") if onednn_available() else ("alone", "stacked")
QUICK = RunConfig(model=ModelConfig(vocab_size=256, context_length=32, n_layer=2, n_head=2, n_kv_head=2, d_model=64),
                  train=dataclasses.replace(preset("demo").train, batch_size=4))


def run_config(name: str, quick: bool) -> RunConfig:
    """The preset, trained with Muon as the demo is (its recipe, whatever the preset's own)."""
    config = QUICK if quick else preset(name)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, optimizer="muon"))


def optimizer_for(model: GPT, config: RunConfig, variant: str) -> CombinedOptimizer:
    """`make_optimizer`'s AdamW + Muon; for "alone", Muon with one group per matrix."""
    optimizer = make_optimizer(model, config.train)
    assert isinstance(optimizer, CombinedOptimizer)
    if variant != "alone":
        set_matmul_kernel(optimizer, "onednn" if variant == "onednn" else "aten")
        return optimizer
    adamw, muon = optimizer.optimizers
    (group,) = muon.param_groups
    settings = {key: value for key, value in group.items() if key != "params"}
    alone = Muon([{**settings, "params": [p]} for p in group["params"]], lr=group["lr"])
    return CombinedOptimizer([adamw, alone])


def muon_step_runner(model: GPT, optimizer: CombinedOptimizer) -> Callable[[], float]:
    """Muon's step alone on fixed random gradients: steps per second."""
    muon = optimizer.optimizers[1]
    for group in muon.param_groups:
        for p in group["params"]:
            p.grad = torch.randn_like(p)

    def run() -> float:
        return 1.0 / seconds(muon.step)

    return run


def train_step_runner(model: GPT, optimizer: CombinedOptimizer, config: RunConfig) -> Callable[[], float]:
    """Two whole training steps on random tokens: tokens per second."""
    shape = (config.train.batch_size, config.model.context_length)
    ids, targets = (torch.randint(0, config.model.vocab_size, shape) for _ in range(2))

    def step() -> None:
        model(ids, targets).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def two_steps() -> None:
        step()
        step()

    def run() -> float:
        return 2 * ids.numel() / seconds(two_steps)

    return run


def check_equal_steps(config: RunConfig) -> None:
    """Every variant takes the same four training steps from the same weights: they must end equal."""
    ends = []
    for variant in VARIANTS:
        torch.manual_seed(0)
        model = GPT(config.model)
        optimizer = optimizer_for(model, config, variant)
        torch.manual_seed(1)
        runner = train_step_runner(model, optimizer, config)
        for _ in range(2):  # each call is two steps
            runner()
        ends.append(dict(model.named_parameters()))
    alone, *others = ends
    for other in others:
        for name, weight in alone.items():
            torch.testing.assert_close(other[name], weight, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def bench(name: str, repeats: int, whole_steps: bool, quick: bool) -> list[list[str]]:
    config = run_config(name, quick)
    check_equal_steps(config)
    built = {}
    for variant in VARIANTS:
        torch.manual_seed(0)
        model = GPT(config.model)
        built[variant] = (model, optimizer_for(model, config, variant))
    rows = []
    kinds = [("Muon's step", "ms", muon_step_runner)]
    if whole_steps:
        kinds.append(("training step", "tokens/s", lambda m, o: train_step_runner(m, o, config)))
    for kind, unit, make in kinds:
        runners = {variant: make(*built[variant]) for variant in VARIANTS}
        for run in runners.values():  # warm up: allocator, thread pool
            run()
        rates = interleaved(runners, repeats)
        for variant in VARIANTS:
            rate = rates[variant]
            shown = 1e3 / rate.median if unit == "ms" else rate.median
            rows.append([f"{'tiny' if quick else name}, {kind}, {variant}", f"{fmt(shown, 1)} {unit}",
                         f"{rate.spread:.0%}", fmt_ratio(ratio(rate.median, rates['alone'].median))])
    return rows


def main(argv: list[str] | None = None) -> int:
    args = preset_benchmark_args(__doc__, argv, "demo", 15, "also time whole training steps",
                                 "a tiny model, 2 rounds (seconds; for tests)")
    names = args.presets
    keep_freed_memory()  # as the training commands do
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, fp32, eager; medians of "
          f"{2 if args.quick else args.repeats} interleaved rounds; faster than alone: above 1.00x")
    rows = [row for name in (names[:1] if args.quick else names)
            for row in bench(name, 2 if args.quick else args.repeats, args.step, args.quick)]
    print(markdown_table(["preset, what, Newton-Schulz", "median", "spread", "speed vs alone"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
