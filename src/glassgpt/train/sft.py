"""Supervised fine-tuning (SFT): a pretrained model learns to answer as an assistant.

The base model continues text; after SFT it continues a conversation: it has read thousands of
conversations rendered with the chat template (`glassgpt.chat_template`) and learned to
produce only the assistant's part, ending it with `<|assistant_end|>`. The loss is the same
next-token cross-entropy as pretraining, counted only on the assistant's tokens (everything
else has target -1). It runs on the one training loop (`glassgpt.train.loop`): this module
brings the base weights, the conversations (`glassgpt.data.chats`: a user's JSONL file, or the
built-in tasks of `glassgpt.data.tasks`), validation loss on held-out conversations, and
checkpoints into a run folder whose config records `stage` "sft" and the base run as `parent`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from glassgpt.chat_template import ChatTokens
from glassgpt.config import RunConfig, TrainConfig
from glassgpt.data.batches import Batch
from glassgpt.data.chats import (
    ChatBatches,
    RenderedChat,
    fixed_batches,
    read_conversations,
    render_all,
)
from glassgpt.data.tasks import conversations
from glassgpt.errors import GlassError
from glassgpt.evaluate import EvalResult
from glassgpt.matmul import check_matmul_setting
from glassgpt.model import GPT
from glassgpt.runs import RunFolder, TrainerState
from glassgpt.runtime import (
    Log,
    autocast,
    choose_dtype,
    maybe_compile,
    resolve_device,
    seed_everything,
    step_timer,
)
from glassgpt.tokenizer import Tokenizer
from glassgpt.train.loop import LoopHooks, run_loop
from glassgpt.train.optim import Optimizer, make_optimizer, use_matmul_kernel
from glassgpt.train.pretrain import (
    Resumable,
    TrainResult,
    checkpoint_saver,
    next_token_loss,
    refuse_out_at_parent,
    restore,
    start_folder,
)

#: The SFT recipe for the small presets: an AdamW fine-tune at a lower rate than pretraining,
#: decaying to zero. 1,200 steps: column addition is a skill the model learns here, not a format
#: (600 steps left the shipped base at 0% on it; README, "chat tuning").
SFT_TRAIN = TrainConfig(batch_size=16, max_steps=1200, optimizer="adamw", lr=1e-3, schedule="cosine",
                        min_lr_ratio=0.0, warmup_steps=20, weight_decay=0.0, eval_every=100,
                        eval_tokens=16384, log_every=10, save_every=200)
#: Conversations of the built-in tasks used for training, and held out for validation loss.
BUILTIN_TRAIN_CONVERSATIONS = 20_000
BUILTIN_VAL_CONVERSATIONS = 400
USER_VAL_EVERY = 20  # of a user's file, every 20th conversation is held out for validation loss


def sft_config(base: str | Path, *, data: str | None = None, train: dict[str, Any] | None = None) -> RunConfig:
    """The config of a new SFT run from the base run folder `base`: its model and tokenizer,
    the SFT recipe with `train` changes (as `TrainConfig` fields), `data` (None = built-in)."""
    base_config = RunFolder(base).load_config()
    return base_config.for_finetune(stage="sft", parent=str(base), train=SFT_TRAIN, data=data
                                    ).with_overrides(train=train)


def chat_data(tokenizer: Tokenizer, data: str | None, seed: int, log: Log) -> tuple[list[RenderedChat],
                                                                                     list[RenderedChat]]:
    """(training, validation) conversations, rendered: the user's file split 19:1, or the
    built-in tasks (training from their train split, validation from the held-out split)."""
    if data is None:
        train = list(conversations(BUILTIN_TRAIN_CONVERSATIONS, seed=seed, split="train"))
        val = list(conversations(BUILTIN_VAL_CONVERSATIONS, seed=seed, split="heldout"))
        source = "built-in tasks"
    else:
        everything = read_conversations(data)
        val = everything[::USER_VAL_EVERY] if len(everything) >= USER_VAL_EVERY else everything
        train = [c for i, c in enumerate(everything) if i % USER_VAL_EVERY] if len(everything) >= USER_VAL_EVERY \
            else everything
        source = data
    rendered_train, rendered_val = render_all(tokenizer, train), render_all(tokenizer, val)
    trained = sum(sum(c.mask) for c in rendered_train)
    log(f"data: {len(train):,} training conversations ({trained:,} answer tokens) and {len(val):,} "
        f"validation conversations from {source}")
    return rendered_train, rendered_val


@torch.no_grad()
def answer_loss(model: torch.nn.Module, batches: list[Batch], dtype: torch.dtype, device: torch.device) -> float:
    """Mean cross-entropy over the trained (assistant) tokens of fixed batches."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for x, y in batches:
            with autocast(dtype, device):
                loss = model(x, targets=y).loss
            n = int((y != -1).sum())
            total, count = total + float(loss) * n, count + n
    finally:
        model.train(was_training)
    return total / max(count, 1)


def start_training(run: RunFolder, config: RunConfig, model: torch.nn.Module, tokenizer: Tokenizer,
                   batches: Resumable, resume: bool, log: Log) -> tuple[Optimizer, TrainerState]:
    """A fine-tuning stage's optimizer and state: fresh, or restored from the run (`resume`);
    the run folder gets the config (and, when new, the tokenizer and no old metrics)."""
    model.train()
    optimizer = make_optimizer(model, config.train)
    state = restore(run, model, optimizer, batches, log=log) if resume else TrainerState()
    if not resume:
        run.clear_metrics()
        run.save_tokenizer(tokenizer)
    run.save_config(config)
    return optimizer, state


def sft(config: RunConfig, out_dir: str | Path, *, resume: bool = False, device: torch.device | None = None,
        show_progress: bool = True, log: Log = print) -> TrainResult:
    """Fine-tune `config.parent`'s model on conversations into `out_dir` (or continue it, with
    `config` from `RunConfig.for_resume`). One process."""
    run = RunFolder(out_dir)
    device = device or resolve_device("auto")
    check_matmul_setting(config.train.matmul, device, config.train.dtype)  # before anything is written
    if resume:
        saved = run.load_config()
        if saved.stage != "sft":
            raise GlassError(f"{run.path} is a {saved.stage} run, not an sft run: resume it with its own command")
    elif config.parent is None:
        raise GlassError("SFT needs a base model to start from (--model RUN)")
    else:
        refuse_out_at_parent(config.parent, run)
    if not resume and run.has_trainer_state():
        start_folder(run, resume)  # refuses before anything is loaded
    seed_everything(config.train.seed)

    if resume:
        tokenizer = run.load_tokenizer()
        model = GPT(config.model).to(device)
    else:
        base = RunFolder(config.parent).load(device)
        tokenizer, model = base.tokenizer, base.model
        log(f"base model: {config.parent} (stage {base.config.stage}, step {base.step:,})")
    ChatTokens.of(tokenizer)  # a clear error for a tokenizer without the chat tokens
    t = config.train
    context = config.model.context_length
    train_chats, val_chats = chat_data(tokenizer, config.data, t.seed, log)
    start_folder(run, resume)  # only now: bad data or a bad base leave no folder behind
    pad_id = tokenizer.special_ids["<|pad|>"]
    batches = ChatBatches(train_chats, context, t.batch_size, t.grad_accum, pad_id=pad_id, seed=t.seed,
                          device=device)
    rows_for_eval = max(1, t.eval_tokens // (context + 1))
    val_batches = fixed_batches(val_chats, context, pad_id, t.batch_size, device)
    val_batches = val_batches[:max(1, rows_for_eval // t.batch_size)]

    optimizer, state = start_training(run, config, model, tokenizer, batches, resume, log)
    # One process (sft has no torchrun path): the model's own step may decide, as in pretraining.
    dtype = choose_dtype(t.dtype, device, step_timer(model, t.batch_size, context, config.model.vocab_size, device))
    matmuls = use_matmul_kernel(model, optimizer, t.matmul, device, dtype)  # before compiling
    compiled = maybe_compile(model, t.compile, device, log)
    log(f"model: {model.num_parameters():,} parameters, context {context}; {str(dtype).removeprefix('torch.')} "
        f"on {device.type}; {t.batch_size * t.grad_accum:,} packed rows of {context} tokens per step")
    if matmuls.describe():
        log(matmuls.describe())

    def validate(is_last: bool) -> dict[str, float]:
        return {"val_loss": answer_loss(model, val_batches, dtype, device)}

    hooks = LoopHooks(evaluate=validate, save=checkpoint_saver(run, model, optimizer, batches, log=log),
                      record=run.append_metrics, describe_eval=lambda m: f"val answer loss {m['val_loss']:.3f}")
    result = run_loop(compiled, optimizer, batches.next_step, next_token_loss, t, state, device=device, dtype=dtype,
                      hooks=hooks, show_progress=show_progress, log=log,
                      flops_per_token=config.model.flops_per_token())
    log(f"saved {run.path} at step {state.step:,} ({state.elapsed_s:.0f} s of training)")
    val = None
    if result.last_eval is not None:
        val = EvalResult(result.last_eval["val_loss"], float("nan"), 0)
    return TrainResult(run.path, state.step, val, result.tokens_per_s, state.elapsed_s, model.num_parameters(),
                       result.mfu)
