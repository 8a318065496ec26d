"""The one training loop every stage runs on: pretraining today, chat tuning and RL next.

A stage brings a model, an optimizer (one, or a `CombinedOptimizer`), a source of batches and
a loss; the loop does the rest: the learning-rate schedule (a multiplier of each parameter
group's own peak lr, `group["peak_lr"]`, or of `train.lr` where a group has none), gradient
accumulation (gradients are synced between processes on the last micro-step only), clipping,
QK-clip when `train.qk_clip` asks for it, the budget (steps or training time, whichever runs
out first, agreed across processes so that none waits forever), the progress bar, metrics
records, periodic evaluation and saving through hooks, and a save on Ctrl-C. It is a plain function, not a class to subclass: what differs
between stages is passed in.

    loss_fn(model, batch) -> scalar loss tensor   the mean loss of one micro-batch
    next_batches() -> [batch, ...]                this process's micro-batches for one step
    hooks.evaluate(is_last) -> {name: value}      validation numbers (every process calls it)
    hooks.save(state, interrupted)                write a checkpoint (every process calls it)
    hooks.record(record)                          keep a metrics record (rank 0 only)

Given the model's training FLOPs per token and the peak FLOP/s of all processes together, each
record also says how fast the model trains in FLOP/s and as model FLOP utilisation (MFU). The
peak can be measured again at the first log and every evaluation (`measure_peak`): MFU is against the best rate
seen, because a measurement taken while the machine was disturbed can only come out low, and
one low peak made a run here report 128% MFU.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from glassgpt.config import TrainConfig
from glassgpt.runs import TrainerState
from glassgpt.runtime import SINGLE, Distributed, Log, all_reduce, autocast, gradient_sync
from glassgpt.train.optim import (
    Optimizer,
    clip_attention_logits,
    lr_multiplier,
    track_attention_logits,
)

Batch = Sequence[torch.Tensor]
LossFn = Callable[[nn.Module, Batch], torch.Tensor]


@dataclass
class LoopHooks:
    """What a stage does at evaluation, save and logging points (each optional)."""

    evaluate: Callable[[bool], dict[str, float]] | None = None
    save: Callable[[TrainerState, bool], None] | None = None
    record: Callable[[dict[str, Any]], None] | None = None
    describe_eval: Callable[[dict[str, float]], str] = field(
        default=lambda metrics: " | ".join(f"{k} {v:.3f}" for k, v in metrics.items()))


@dataclass(frozen=True)
class LoopResult:
    state: TrainerState
    last_eval: dict[str, float] | None
    tokens_per_s: float
    mfu: float | None = None  # of the last logging window, when the peak was given


def speed_text(tokens_per_s: float, flops_per_token: float, peak_flops: float) -> str:
    """'6,512 tok/s, 95 GFLOP/s, 68% MFU' (the FLOP parts only when they are known)."""
    text = f"{tokens_per_s:,.0f} tok/s"
    if flops_per_token > 0:
        text += f", {tokens_per_s * flops_per_token / 1e9:,.0f} GFLOP/s"
        if peak_flops > 0:
            text += f", {tokens_per_s * flops_per_token / peak_flops:.0%} MFU"
    return text


def progress(train: TrainConfig, state: TrainerState) -> float:
    """How far through its budget the run is, 0..1: by steps or by time, whichever is further."""
    by_steps = state.step / train.max_steps
    by_time = state.elapsed_s / (60 * train.time_budget_min) if train.time_budget_min > 0 else 0.0
    return max(by_steps, by_time)


def run_loop(model: nn.Module, optimizer: Optimizer, next_batches: Callable[[], list[Batch]],
             loss_fn: LossFn, train: TrainConfig, state: TrainerState, *, device: torch.device,
             dtype: torch.dtype = torch.float32, distributed: Distributed = SINGLE,
             hooks: LoopHooks | None = None, show_progress: bool = True, log: Log = print,
             flops_per_token: float = 0.0, peak_flops: float = 0.0,
             measure_peak: Callable[[], float] | None = None) -> LoopResult:
    """Train `model` (plain, DDP-wrapped or sharded) from `state` until the budget is spent.

    `flops_per_token`: the model's training FLOPs per token; `peak_flops`: the measured matmul
    peak of all processes together (FLOP/s). With them, records carry FLOP/s and MFU.
    `measure_peak` measures that peak again; it is called at the first logging window and at
    every evaluation (outside the training time), and the highest value is kept.

    `state` is updated in place (step, tokens seen, training time). Evaluation and saving
    happen every `eval_every` / `save_every` steps and at the end; Ctrl-C saves, then re-raises.
    """
    hooks = hooks or LoopHooks()
    main = distributed.is_main
    last_eval: dict[str, float] | None = None
    bar = tqdm(total=1000, disable=not (show_progress and main), unit="‰", dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
               initial=int(1000 * min(1.0, progress(train, state))))
    # A logging window's speed is the run's tokens and training time gained since the last log:
    # evaluation, peak measurements and saving between steps are not training time.
    window_start, tokens_per_s = (state.tokens_seen, state.elapsed_s), 0.0
    # A peak measured once at start-up can come out low (131 GFLOP/s against 199 in one run here,
    # reading 125% MFU until the first evaluation): the first log measures it again.
    peak_checked_since_start = False
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    track_attention_logits(model, train.qk_clip > 0)
    try:
        while progress(train, state) < 1.0:
            step_start = time.perf_counter()
            scale = lr_multiplier(train, state.step, progress(train, state))
            for group in optimizer.param_groups:
                # AdamW and Muon groups follow one schedule shape, each at its own peak.
                group["lr"] = group.get("peak_lr", train.lr) * scale
            lr = train.lr * scale  # recorded: the AdamW groups' rate
            micro_batches = next_batches()
            loss_sum, step_tokens = 0.0, 0
            for i, batch in enumerate(micro_batches):
                # Gradients are averaged across processes once per step, on the last micro-step.
                with gradient_sync(model, enabled=i == len(micro_batches) - 1):
                    with autocast(dtype, device):
                        loss = loss_fn(model, batch) / len(micro_batches)
                    loss.backward()
                loss_sum += loss.item()
                step_tokens += batch[0].numel()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, train.grad_clip) if train.grad_clip > 0 else None
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if train.qk_clip > 0:
                max_logit = clip_attention_logits(model, train.qk_clip, distributed, device)

            state.step += 1
            step_tokens *= distributed.world_size
            state.tokens_seen += step_tokens
            # Every process adds the slowest one's step time, so all agree when the budget ends.
            (step_seconds,) = all_reduce([time.perf_counter() - step_start], "max", distributed, device)
            state.elapsed_s += step_seconds
            bar.update(int(1000 * min(1.0, progress(train, state))) - bar.n)

            is_last = progress(train, state) >= 1.0
            is_eval = state.step % train.eval_every == 0 or is_last
            if state.step % train.log_every == 0 or is_eval:
                (loss_sum,) = all_reduce([loss_sum], "mean", distributed, device)
                tokens_per_s = (state.tokens_seen - window_start[0]) / max(state.elapsed_s - window_start[1], 1e-9)
                if measure_peak is not None and (is_eval or not peak_checked_since_start):
                    peak_flops, peak_checked_since_start = max(peak_flops, measure_peak()), True
                record: dict[str, Any] = {
                    "step": state.step, "train_loss": round(loss_sum, 5), "lr": lr,
                    "tokens_per_s": round(tokens_per_s, 1), "tokens_seen": state.tokens_seen,
                    "elapsed_s": round(state.elapsed_s, 2)}
                if grad_norm is not None:
                    record["grad_norm"] = round(float(grad_norm), 4)
                if train.qk_clip > 0:
                    record["max_attention_logit"] = round(max_logit, 2)  # before this step's clip
                if flops_per_token > 0:
                    record["model_gflops_per_s"] = round(tokens_per_s * flops_per_token / 1e9, 2)
                    if peak_flops > 0:
                        record["mfu"] = round(tokens_per_s * flops_per_token / peak_flops, 4)
                        record["peak_gflops_per_s"] = round(peak_flops / 1e9, 1)
                speed = speed_text(tokens_per_s, flops_per_token, peak_flops)
                if is_eval and hooks.evaluate is not None:
                    last_eval = hooks.evaluate(is_last)
                    record.update({k: round(v, 5) for k, v in last_eval.items()})
                    if main:
                        bar.write(f"step {state.step:>6,} | train loss {loss_sum:.3f} | "
                                  f"{hooks.describe_eval(last_eval)} | {speed}")
                window_start = (state.tokens_seen, state.elapsed_s)
                if main and hooks.record is not None:
                    hooks.record(record)
                bar.set_postfix_str(f"step {state.step:,} loss {loss_sum:.3f} {speed}", refresh=False)
            if hooks.save is not None and (is_last or state.step % train.save_every == 0):
                hooks.save(state, False)
    except KeyboardInterrupt:
        bar.close()
        if hooks.save is not None:
            hooks.save(state, True)
        raise
    finally:
        track_attention_logits(model, False)
    bar.close()
    mfu = tokens_per_s * flops_per_token / peak_flops if flops_per_token > 0 and peak_flops > 0 else None
    return LoopResult(state, last_eval, tokens_per_s, mfu)
