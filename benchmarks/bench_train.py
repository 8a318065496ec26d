"""Training throughput: our `GPT` vs transformers' `LlamaForCausalLM` holding the same weights.

One training step, identical on both sides: forward with the loss on the same batch of real
corpus tokens (ours: `model(x, targets=y).loss`; theirs: its own loss path,
`model(input_ids=x, labels=y, shift_labels=y).loss`, so both predict y from x), backward,
gradient clipping at 1.0, fused AdamW from `glassgpt.train.optim.make_optimizer` (the same
parameter groups and hyper-parameters for both), zero_grad. Both start from identical weights
and see the same batches in the same order, so their first losses must agree (checked).

A setting is a dtype (fp32, or bf16 autocast), transformers' attention implementation
("sdpa", its default, or "eager") and optionally `torch.compile` for both sides.

Measured: `warmup` untimed steps per side, then `repeats` rounds of timed steps, alternating
which side goes first; tokens/s is the median round. GFLOP/s is tokens/s times
`ModelConfig.flops_per_token()` (matmul FLOPs of forward + backward), compared with the
machine's measured matmul peak for that dtype.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from benchmarks.common import (
    MachineInfo,
    Rate,
    bf16_skip_reason,
    fmt,
    fmt_ratio,
    interleaved,
    markdown_table,
    ratio,
    seconds,
)
from glassgpt.config import PRESETS, RunConfig
from glassgpt.data.batches import token_windows
from glassgpt.interop.hf_llama import to_hf_model
from glassgpt.model import GPT
from glassgpt.train.optim import make_optimizer

OURS, THEIRS = "glassgpt", "transformers"
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainCase:
    """One model to train: a preset's model and optimiser settings at a given batch size."""

    name: str
    run: RunConfig
    batch_size: int


@dataclass(frozen=True)
class Setting:
    """How both sides run: dtype, transformers' attention implementation, torch.compile."""

    dtype: str = "fp32"  # "fp32" | "bf16" (autocast)
    hf_attention: str = "sdpa"  # "sdpa" | "eager"
    compile: bool = False

    @property
    def label(self) -> str:
        parts = [self.dtype] + (["compile"] if self.compile else [])
        return "+".join(parts) + ("" if self.hf_attention == "sdpa" else f" (HF {self.hf_attention})")

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float32 if self.dtype == "fp32" else torch.bfloat16


@dataclass(frozen=True)
class TrainPlan:
    cases: list[TrainCase]
    settings: list[Setting]
    warmup: int  # untimed steps per side before timing
    steps: int  # timed steps per round, at least
    repeats: int  # rounds per side (the median is reported)
    round_seconds: float = 0.0  # more steps per round if needed for a round to last this long
    bf16_max_step_s: float = 0.0  # emulated bf16: measure (at batch 1) only if a step takes < this


@dataclass
class TrainResult:
    """Ours vs theirs for one case at one setting."""

    case: str
    setting: Setting
    batch_size: int
    context: int
    params: int
    flops_per_token: int
    peak_gflops: float
    ours: Rate = field(default_factory=Rate)  # tokens/s
    theirs: Rate = field(default_factory=Rate)
    first_loss_ours: float = 0.0
    first_loss_theirs: float = 0.0
    steps: int = 0  # timed steps per round
    skipped: str | None = None
    note: str = ""  # set when the setting ran at a reduced size (then not a "best" candidate)

    @property
    def loss_diff(self) -> float:
        return abs(self.first_loss_ours - self.first_loss_theirs)

    @property
    def loss_ok(self) -> bool:
        tolerance = 1e-4 if self.setting.dtype == "fp32" else 5e-2
        return self.skipped is not None or self.loss_diff <= tolerance

    def gflops(self, rate: Rate) -> float:
        return rate.median * self.flops_per_token / 1e9

    def pct_of_peak(self, rate: Rate) -> float | None:
        """Share of the dtype's matmul peak (None for emulated bf16: its "peak" means little)."""
        if not self.peak_gflops or self.note:
            return None
        return 100 * self.gflops(rate) / self.peak_gflops

    def to_dict(self) -> dict[str, object]:
        return {
            "case": self.case, "setting": dataclasses.asdict(self.setting), "label": self.setting.label,
            "batch_size": self.batch_size, "context": self.context, "params": self.params,
            "flops_per_token": self.flops_per_token, "steps_per_round": self.steps,
            "skipped": self.skipped, "note": self.note,
            "ours_tokens_per_s": self.ours.to_dict(), "theirs_tokens_per_s": self.theirs.to_dict(),
            "ours_gflops": self.gflops(self.ours), "theirs_gflops": self.gflops(self.theirs),
            "ours_pct_of_peak": self.pct_of_peak(self.ours),
            "theirs_pct_of_peak": self.pct_of_peak(self.theirs),
            "ratio": ratio(self.ours.median, self.theirs.median),
            "first_loss_ours": self.first_loss_ours, "first_loss_theirs": self.first_loss_theirs,
            "loss_ok": self.loss_ok,
        }


class Side:
    """One implementation being trained: model, optimiser, and where it is in the batch stream."""

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn, run: RunConfig, dtype: torch.dtype,
                 batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.model = model.train()
        self.loss_fn = loss_fn
        self.optimizer = make_optimizer(model, run.train)
        self.clip = run.train.grad_clip
        self.dtype = dtype
        self.batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = itertools.cycle(batches)
        self.losses: list[float] = []

    def step(self) -> float:
        x, y = next(self.batches)
        autocast = (torch.autocast("cpu", dtype=self.dtype) if self.dtype != torch.float32
                    else contextlib.nullcontext())
        with autocast:
            loss = self.loss_fn(x, y)
        loss.backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        value = loss.item()
        self.losses.append(value)
        return value

    def rate(self, steps: int, tokens_per_step: int) -> float:
        """Tokens per second over `steps` steps."""
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return steps * tokens_per_step / (time.perf_counter() - start)


def make_batches(ids: np.ndarray, count: int, batch_size: int, context: int,
                 seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` batches of random windows: inputs x and next-token targets y, (B, T) each."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        starts = rng.integers(0, len(ids) - context - 1, batch_size)
        x, y = token_windows(ids, starts, context)
        out.append((x.contiguous(), y.contiguous()))
    return out


def build_sides(case: TrainCase, setting: Setting, batch_size: int, ids: np.ndarray,
                n_batches: int = 8) -> tuple[Side, Side]:
    """Fresh identical models (seed 0) for both implementations, on the same batches."""
    torch.manual_seed(0)
    ours = GPT(case.run.model)
    theirs = to_hf_model(ours)
    if setting.hf_attention != "sdpa":
        theirs.set_attn_implementation(setting.hf_attention)
    ours_fn = torch.compile(ours) if setting.compile else ours
    theirs_fn = torch.compile(theirs) if setting.compile else theirs
    batches = make_batches(ids, n_batches, batch_size, case.run.model.context_length)
    dtype = setting.torch_dtype
    return (Side(ours, lambda x, y: ours_fn(x, targets=y).loss, case.run, dtype, batches),
            Side(theirs, lambda x, y: theirs_fn(input_ids=x, labels=y, shift_labels=y).loss,
                 case.run, dtype, batches))


def measure(case: TrainCase, setting: Setting, plan: TrainPlan, machine: MachineInfo,
            ids: np.ndarray, log: Callable[[str], None]) -> TrainResult:
    """Time one case at one setting, or explain why it is skipped."""
    config = case.run.model
    peak = machine.fp32_gflops if setting.dtype == "fp32" else machine.bf16_gflops
    result = TrainResult(case.name, setting, case.batch_size, config.context_length,
                         config.num_parameters(), config.flops_per_token(), peak)
    warmup, steps, repeats, batch_size = plan.warmup, plan.steps, plan.repeats, case.batch_size
    if setting.dtype == "bf16" and not machine.bf16_fast:
        # Emulated bf16: a brief, honest measurement at batch 1 if it fits the time allowed.
        step_s = config.flops_per_token() * config.context_length / (machine.bf16_gflops * 1e9)
        if step_s > plan.bf16_max_step_s:
            result.skipped = bf16_skip_reason(machine)
            if plan.bf16_max_step_s > 0:
                result.skipped += f"; a batch-1 step would take ~{step_s:.0f} s"
            return result
        warmup, steps, repeats, batch_size = 1, 1, 1, 1
        result.batch_size = 1
        result.note = "emulated bf16: batch 1, one timed step"
    log(f"  train {case.name} {setting.label} batch {batch_size}")
    ours, theirs = build_sides(case, setting, batch_size, ids)
    tokens = batch_size * config.context_length
    step_seconds = 0.0
    for _ in range(warmup):  # the last warm-up step sizes the rounds
        step_seconds = (seconds(ours.step) + seconds(theirs.step)) / 2
    result.first_loss_ours, result.first_loss_theirs = ours.losses[0], theirs.losses[0]
    if plan.round_seconds and not result.note:
        steps = max(steps, math.ceil(plan.round_seconds / max(step_seconds, 1e-6)))
    result.steps = steps
    rates = interleaved({OURS: lambda: ours.rate(steps, tokens), THEIRS: lambda: theirs.rate(steps, tokens)},
                        repeats)
    result.ours, result.theirs = rates[OURS], rates[THEIRS]
    return result


def run(plan: TrainPlan, machine: MachineInfo, ids: np.ndarray,
        log: Callable[[str], None]) -> list[TrainResult]:
    results = []
    for case in plan.cases:
        if int(ids.max()) >= case.run.model.vocab_size:
            raise ValueError(f"{case.name}: data ids exceed the model's vocabulary")
        for setting in plan.settings:
            results.append(measure(case, setting, plan, machine, ids, log))
    return results


def make_case(name: str, batch_size: int | None = None, vocab_size: int | None = None) -> TrainCase:
    """A case from a preset; `vocab_size` raises the vocabulary (to fit the data's tokenizer)."""
    run_config = PRESETS[name]
    if vocab_size is not None and vocab_size > run_config.model.vocab_size:
        run_config = dataclasses.replace(
            run_config, model=dataclasses.replace(run_config.model, vocab_size=vocab_size))
    return TrainCase(name, run_config, batch_size or run_config.train.batch_size)


# ----------------------------------------------------------------------------- tables


def tables(results: list[TrainResult], machine: MachineInfo) -> str:
    """Per-setting results, then each side at its best setting."""
    rows = []
    for r in results:
        head = [r.case, f"{r.params / 1e6:.1f}M", f"{r.batch_size}x{r.context}", r.setting.label]
        if r.skipped:
            rows.append([*head, "-", "-", "-", "-", "-", "-", "-", r.skipped])
            continue
        check = f"{'ok' if r.loss_ok else 'MISMATCH'} (diff {r.loss_diff:.1e})"
        rows.append([
            *head, fmt(r.ours.median), fmt(r.theirs.median), fmt_ratio(ratio(r.ours.median, r.theirs.median)),
            fmt(r.gflops(r.ours), 1), fmt(r.pct_of_peak(r.ours), 1), fmt(r.gflops(r.theirs), 1),
            fmt(r.pct_of_peak(r.theirs), 1), check + (f"; {r.note}" if r.note else ""),
        ])
    per_setting = markdown_table(
        ["model", "params", "batch x ctx", "setting", "glassgpt tok/s", "transformers tok/s", "ours/HF",
         "glassgpt GFLOP/s", "% of peak", "HF GFLOP/s", "HF % of peak", "first-loss check"], rows)

    best_rows = []
    for case in dict.fromkeys(r.case for r in results):
        measured = [r for r in results if r.case == case and not r.skipped and not r.note]
        if not measured:
            continue
        ours = max(measured, key=lambda r: r.ours.median)
        theirs = max(measured, key=lambda r: r.theirs.median)
        theirs_label = theirs.setting.label if theirs.setting.hf_attention != "sdpa" else \
            f"{theirs.setting.label} (HF sdpa)"
        best_rows.append([
            case, f"{fmt(ours.ours.median)} ({ours.setting.label.split(' ')[0]})",
            f"{fmt(theirs.theirs.median)} ({theirs_label})",
            fmt_ratio(ratio(ours.ours.median, theirs.theirs.median)),
        ])
    best = markdown_table(["model", "glassgpt best tok/s", "transformers best tok/s", "ours/HF"], best_rows)
    return (f"### Training throughput (tokens/s; torch threads: {machine.torch_threads}; "
            f"peak = measured matmul peak of that dtype)\n\n{per_setting}\n\n"
            f"### Training, each side at its best setting (same batch)\n\n{best}")
