"""Pretraining: self-supervised next-token prediction on real text.

Take a window of text, hide nothing but the future, predict each next token, measure the
cross-entropy, step the weights downhill. Pretraining is data + the one loop
(`glassgpt.train.loop`): this module reads and splits the text, builds (or reuses) the
tokenizer, tokenizes both splits (cached), and gives the loop random windows, the
next-token loss, validation in loss and bits per byte, and checkpoints into the run folder.
A run whose config names a `parent` continues pretraining from that run's weights and
tokenizer, with a fresh optimizer and schedule.

It runs the same in one process or many (`torchrun`): rank 0 builds the tokenizer and writes
the run folder; every process reads its own slice of each step's windows (see
`glassgpt.data.batches`); gradients are averaged by DDP, or the model is sharded with FSDP2.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from glassgpt.config import RunConfig
from glassgpt.data.batches import Batch, WindowSampler
from glassgpt.data.corpus import CorpusSplit, load_documents, split_documents
from glassgpt.data.token_cache import TokenArray, encode_documents
from glassgpt.errors import GlassError
from glassgpt.evaluate import EvalResult, evaluate, token_byte_lengths
from glassgpt.matmul import check_matmul_setting
from glassgpt.model import GPT
from glassgpt.runs import LoadedRun, RunFolder, TrainerState
from glassgpt.runtime import (
    SINGLE,
    Distributed,
    Log,
    broadcast_object,
    choose_dtype,
    full_optimizer_state,
    full_state_dict,
    is_sharded,
    load_full_state,
    main_process_log,
    matmul_flops,
    maybe_compile,
    resolve_device,
    seed_everything,
    step_timer,
    unwrap,
    wrap_model,
)
from glassgpt.tokenizer import Tokenizer
from glassgpt.train.loop import LoopHooks, run_loop
from glassgpt.train.optim import Optimizer, make_optimizer, use_matmul_kernel


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    val: EvalResult | None
    tokens_per_s: float
    elapsed_s: float
    num_parameters: int
    mfu: float | None = None  # model FLOP utilisation over the last logging window


@dataclass(frozen=True)
class PreparedData:
    """Tokenizer plus tokenized train and validation splits."""

    tokenizer: Tokenizer
    train: TokenArray
    val: TokenArray


def prepare_data(config: RunConfig, tokenizer: Tokenizer | None, cache_dir: Path | None,
                 show_progress: bool, log: Log) -> PreparedData:
    """Load and split the text, build (or reuse) the tokenizer, tokenize both splits (cached)."""
    documents = load_documents(config.data)
    split: CorpusSplit = split_documents(documents, config.train.val_fraction)
    if tokenizer is None:
        tokenizer = build_tokenizer(config, split, show_progress, log)
    train = encode_documents(tokenizer, split.train, cache_dir, show_progress)
    val = encode_documents(tokenizer, split.val, cache_dir, show_progress)
    min_tokens = config.model.context_length + 2
    if len(train.ids) < min_tokens or len(val.ids) < min_tokens:
        raise GlassError(
            f"the data is too short: {len(train.ids)} training and {len(val.ids)} validation tokens, "
            f"but one window of context needs {min_tokens}; give more text or a smaller --context"
        )
    log(f"data: {len(train.ids):,} training tokens, {len(val.ids):,} validation tokens "
        f"({train.num_bytes / max(1, len(train.ids)):.2f} bytes/token)")
    return PreparedData(tokenizer, train, val)


def build_tokenizer(config: RunConfig, split: CorpusSplit, show_progress: bool, log: Log) -> Tokenizer:
    kind = config.tokenizer.kind
    texts = [d.text for d in split.train]
    start = time.perf_counter()
    if kind == "gpt2":
        tokenizer = Tokenizer.gpt2()
    elif kind == "char":
        tokenizer = Tokenizer.train_char(texts)
    else:
        tokenizer = Tokenizer.train_bpe(texts, config.tokenizer.vocab_size, show_progress=show_progress)
    log(f"tokenizer: {kind}, {tokenizer.vocab_size:,} tokens ({time.perf_counter() - start:.1f} s)")
    return tokenizer


def next_token_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Pretraining's loss: mean cross-entropy of every next token in the windows."""
    x, y = batch
    return model(x, targets=y).loss


def refuse_out_at_parent(parent: str | Path, run: RunFolder) -> None:
    """Every stage that starts from a model (continued pretraining, sft, rl) writes a new folder:
    writing into the parent's own would overwrite the model it reads."""
    if Path(parent).resolve() == run.path.resolve():
        raise GlassError(f"--out {run.path} is the model you start from: choose a new --out")


def load_parent(config: RunConfig, run: RunFolder) -> LoadedRun:
    """The run that continued pretraining starts from, checked against `config` and `run`."""
    assert config.parent is not None
    refuse_out_at_parent(config.parent, run)
    parent = RunFolder(config.parent).load()
    if parent.config.model != config.model:
        raise GlassError(f"{config.parent} holds a different model than this config: build it with "
                         "RunConfig.for_finetune (the CLI's --init-from does)")
    return parent


def start_folder(run: RunFolder, resume: bool, distributed: Distributed = SINGLE) -> None:
    """Refuse to overwrite a trained run or resume a missing one; rank 0 prepares the folder."""
    if resume and not run.has_trainer_state():
        raise GlassError(f"{run.path} has no {RunFolder.TRAINER_STATE} to resume from: train without --resume")
    if not resume and run.has_trainer_state():
        raise GlassError(f"{run.path} already holds a trained run: pass --resume to continue it, or choose a new --out")
    if distributed.is_main:
        run.prepare()


def pretrain(config: RunConfig, out_dir: str | Path, *, resume: bool = False,
             cache_dir: Path | None = None, device: torch.device | None = None,
             distributed: Distributed = SINGLE, fsdp: bool = False,
             show_progress: bool = True, log: Log = print) -> TrainResult:
    """Train (or resume, with `config` from `RunConfig.for_resume`) the run in `out_dir`.

    With several processes (`distributed`), call it in every process with the same arguments;
    the process group must already be up (`glassgpt.runtime.init_process_group`).
    """
    run = RunFolder(out_dir)
    device = device or resolve_device("auto", distributed)
    log = main_process_log(distributed, log)
    show_progress = show_progress and distributed.is_main
    if resume:
        saved = run.load_config()  # first: a clear error when the folder is not a run
        if (saved.model, saved.tokenizer, saved.data) != (config.model, config.tokenizer, config.data):
            raise GlassError("--resume continues the saved model and data: build the config with "
                             "RunConfig.for_resume (the CLI does)")
        if saved.train.optimizer != config.train.optimizer:  # the saved state holds the other one's slots
            raise GlassError(f"--resume continues with the saved optimizer ({saved.train.optimizer}): "
                             "drop --optimizer, or train a new run")
    # Continued pretraining (`parent` set): the parent's weights and tokenizer, a fresh optimizer.
    parent = None if resume or config.parent is None else load_parent(config, run)
    check_matmul_setting(config.train.matmul, device, config.train.dtype)  # before anything is written
    start_folder(run, resume, distributed)
    seed_everything(config.train.seed)

    # Rank 0 builds the tokenizer (BPE training need not be reproducible across processes) and
    # sends it to the others, which need no shared filesystem.
    tokenizer = run.load_tokenizer() if resume else parent.tokenizer if parent else None
    builds_tokenizer = tokenizer is None
    if distributed.enabled and builds_tokenizer and not distributed.is_main:
        tokenizer = Tokenizer.from_json(str(broadcast_object(None, distributed)), "rank 0's tokenizer")
    data = prepare_data(config, tokenizer, cache_dir, show_progress, log)
    if not resume and distributed.is_main:
        run.save_tokenizer(data.tokenizer)
        if builds_tokenizer:
            broadcast_object(data.tokenizer.to_json(), distributed)
    tokenizer = data.tokenizer
    if config.model.vocab_size != tokenizer.vocab_size:
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, vocab_size=tokenizer.vocab_size))

    raw_model = GPT(config.model).to(device)
    if config.train.residual_init == "zero" and parent is None:  # a resumed run loads its weights after
        raw_model.zero_residual_outputs()
    if parent is not None:
        raw_model.load_state_dict(parent.model.state_dict())
        log(f"starting from {config.parent} (stage {parent.config.stage}, step {parent.step:,})")
    model = wrap_model(raw_model, distributed, device, fsdp)
    optimizer = make_optimizer(model, config.train)
    t = config.train
    sampler = WindowSampler(data.train.ids, config.model.context_length, t.batch_size, t.grad_accum,
                            seed=t.seed, rank=distributed.rank, world_size=distributed.world_size,
                            repeat_fraction=t.repeat_fraction,
                            repeat_source=t.repeat_source,
                            repeat_periods=(t.repeat_min_period, t.repeat_max_period), device=device)
    state = restore(run, model, optimizer, sampler, distributed, log) if resume else TrainerState()
    if not resume and distributed.is_main:
        run.clear_metrics()
    if distributed.is_main:
        run.save_config(config)

    step_probe = None if distributed.enabled else step_timer(  # one process: the model's own step may decide
        raw_model, t.batch_size, config.model.context_length, config.model.vocab_size, device)
    dtype = choose_dtype(t.dtype, device, step_probe)
    matmuls = use_matmul_kernel(raw_model, optimizer, t.matmul, device, dtype)  # before compiling

    def measure_peak() -> float:  # MFU's reference: this device's own matmul peak in the training dtype (~0.5 s)
        return matmul_flops(device, dtype) * distributed.world_size

    peak_flops = measure_peak()  # before torch.compile: right after it, two runs here measured 101 and 138 GFLOP/s
    compiled = maybe_compile(model, t.compile, device, log)
    byte_lengths = token_byte_lengths(tokenizer)
    tokens_per_step = t.batch_size * t.grad_accum * config.model.context_length * distributed.world_size
    processes = f" x {distributed.world_size} processes" + (" (FSDP)" if fsdp else " (DDP)") \
        if distributed.enabled else ""
    log(f"model: {raw_model.num_parameters():,} parameters, {config.model.n_layer} layers, "
        f"d_model {config.model.d_model}, context {config.model.context_length}; "
        f"{str(dtype).removeprefix('torch.')} on {device.type}{processes}; {tokens_per_step:,} tokens/step")
    if matmuls.describe():
        log(matmuls.describe())
    log(f"matmul peak measured here: {peak_flops / 1e9:,.0f} GFLOP/s (again at the first log and each evaluation); the model needs "
        f"{config.model.flops_per_token() / 1e6:,.1f} MFLOP per training token")

    def validate(is_last: bool) -> dict[str, float]:
        eval_tokens = 8 * t.eval_tokens if is_last else t.eval_tokens
        result = evaluate(unwrap(model), data.val.ids, byte_lengths, eval_tokens, dtype, device,
                          distributed=distributed)
        return {"val_loss": result.loss, "val_bpb": result.bpb, "val_tokens": result.tokens}

    hooks = LoopHooks(
        evaluate=validate, save=checkpoint_saver(run, model, optimizer, sampler, distributed, log),
        record=run.append_metrics,
        describe_eval=lambda m: f"val loss {m['val_loss']:.3f} | val bpb {m['val_bpb']:.3f}")
    result = run_loop(compiled, optimizer, sampler.next_step, next_token_loss, t, state, device=device,
                      dtype=dtype, distributed=distributed, hooks=hooks, show_progress=show_progress, log=log,
                      flops_per_token=config.model.flops_per_token(), peak_flops=peak_flops,
                      measure_peak=measure_peak)
    log(f"saved {run.path} at step {state.step:,} ({state.elapsed_s:.0f} s of training)")
    val = None
    if result.last_eval is not None:
        val = EvalResult(result.last_eval["val_loss"], result.last_eval["val_bpb"],
                         int(result.last_eval["val_tokens"]))
    return TrainResult(run.path, state.step, val, result.tokens_per_s, state.elapsed_s, raw_model.num_parameters(),
                       result.mfu)


class Resumable(Protocol):
    """A batch source whose position is one generator's state (`WindowSampler`, `ChatBatches`)."""

    def get_state(self) -> torch.Tensor: ...

    def set_state(self, state: torch.Tensor) -> None: ...


def restore(run: RunFolder, model: torch.nn.Module, optimizer: Optimizer, sampler: Resumable,
            distributed: Distributed = SINGLE, log: Log = print) -> TrainerState:
    """Load a run's trainer state into the model, optimizer, RNGs and batch source (for --resume)."""
    saved_training = run.load_trainer_state()
    state = saved_training.state
    try:
        load_full_state(model, optimizer, saved_training.weights, saved_training.optimizer_state)
    except (ValueError, KeyError, RuntimeError) as err:
        raise GlassError(f"{run.trainer_state_path} does not match this model ({err}): "
                         "train again without --resume") from None
    if state.torch_rng is not None:
        torch.set_rng_state(state.torch_rng)
    if state.data_rng is not None:
        sampler.set_state(state.data_rng)
    if distributed.is_main:
        run.keep_metrics_until(state.step)
    log(f"resuming {run.path} at step {state.step:,}")
    return state


def checkpoint_saver(run: RunFolder, model: torch.nn.Module, optimizer: Optimizer, sampler: Resumable,
                     distributed: Distributed = SINGLE, log: Log = print) -> Callable[[TrainerState, bool], None]:
    """The loop's save hook: weights, trainer state (optimizer, RNGs, batch position) and the loss curve."""

    def save(state: TrainerState, interrupted: bool) -> None:
        if interrupted and is_sharded(model):
            # Gathering shards needs every process, and Ctrl-C reaches them at different points.
            log("interrupted: a sharded run keeps its last checkpoint; continue with --resume")
            return
        state.torch_rng = torch.get_rng_state()
        state.data_rng = sampler.get_state()
        weights = full_state_dict(model)  # a collective under FSDP: every process takes part
        optimizer_state = full_optimizer_state(model, optimizer)
        if distributed.is_main:
            run.save_trainer_state(weights, optimizer_state, state)
            run.save_weights(weights, state.step)
            _plot_metrics(run)
        if interrupted:
            log(f"interrupted: saved step {state.step:,} to {run.path} (continue with --resume)")

    return save


def _plot_metrics(run: RunFolder) -> None:
    from glassgpt.plots import plot_loss_curve

    plot_loss_curve(run.metrics_path, run.loss_curve_path)

