"""Training: self-supervised next-token prediction on real text.

Take a window of text, hide nothing but the future, predict each next token, measure the
cross-entropy, step the weights downhill (AdamW). The loop adds what a real trainer needs:
warmup + cosine learning-rate schedule (by steps or by the time budget, whichever runs out
first), gradient accumulation and clipping, mixed precision where the hardware runs it faster
(measured, not assumed), optional `torch.compile`, periodic validation in loss and bits per
byte, a progress bar, `metrics.jsonl`, a loss-curve PNG, and atomic checkpoints that
`resume` continues from exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from glassgpt import runs as ckpt
from glassgpt.config import RunConfig
from glassgpt.data.corpus import CorpusSplit, load_documents, split_documents
from glassgpt.data.token_cache import TokenArray, encode_documents, token_windows
from glassgpt.errors import GlassError
from glassgpt.evaluate import EvalResult, autocast, evaluate, token_byte_lengths
from glassgpt.model import GPT
from glassgpt.tokenizer import Tokenizer

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    val: EvalResult | None
    tokens_per_s: float
    elapsed_s: float
    num_parameters: int


@dataclass(frozen=True)
class PreparedData:
    """Tokenizer plus tokenized train and validation splits."""

    tokenizer: Tokenizer
    train: TokenArray
    val: TokenArray


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose_dtype(setting: str, device: torch.device) -> torch.dtype:
    """bf16 autocast or plain fp32. "auto" times a matmul in both: many CPUs emulate bf16 slowly."""
    if setting == "fp32":
        return torch.float32
    if setting == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    a = torch.randn(384, 384, device=device)

    def seconds(dtype: torch.dtype) -> float:
        x = a.to(dtype)
        x @ x
        start = time.perf_counter()
        for _ in range(4):
            x @ x
        return time.perf_counter() - start

    return torch.bfloat16 if seconds(torch.bfloat16) < 0.8 * seconds(torch.float32) else torch.float32


def learning_rate(config: RunConfig, step: int, progress: float) -> float:
    """Linear warmup over `warmup_steps`, then cosine from lr to lr * min_lr_ratio as progress 0 -> 1."""
    t = config.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return t.lr * (t.min_lr_ratio + (1.0 - t.min_lr_ratio) * cosine)


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


def sample_batch(ids: np.ndarray, batch_size: int, context: int, generator: torch.Generator,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of `context` tokens; targets are the same windows shifted by one."""
    starts = torch.randint(0, len(ids) - context - 1, (batch_size,), generator=generator).tolist()
    return token_windows(ids, starts, context, device)


def make_optimizer(model: GPT, config: RunConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on norm gains). Fused kernel where available."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    t = config.train
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), fused=True)
    except (RuntimeError, TypeError):  # older torch or a device without the fused kernel
        return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2))


def _truncate_metrics(path: Path, after_step: int) -> None:
    """On resume, drop log lines from steps that the checkpoint does not contain."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= after_step]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def train(config: RunConfig, out_dir: str | Path, *, resume: bool = False,
          cache_dir: Path | None = None, device: torch.device | None = None,
          show_progress: bool = True, log: Log = print) -> TrainResult:
    """Train (or resume) the run in `out_dir`; returns the final validation result."""
    out_dir = Path(out_dir)
    device = device or default_device()
    if resume:
        # The model, tokenizer and data stay as saved; the recipe (e.g. a longer budget) may change.
        config = dataclasses.replace(ckpt.load_config(out_dir), train=config.train)
        if not (out_dir / ckpt.STATE_FILE).is_file():
            raise GlassError(f"{out_dir} has no {ckpt.STATE_FILE} to resume from: train without --resume")
        tokenizer = Tokenizer.load(out_dir / ckpt.TOKENIZER_FILE)
    else:
        if (out_dir / ckpt.STATE_FILE).exists():
            raise GlassError(
                f"{out_dir} already holds a trained run: pass --resume to continue it, or choose a new --out"
            )
        tokenizer = None

    torch.manual_seed(config.train.seed)
    data = prepare_data(config, tokenizer, cache_dir, show_progress, log)
    tokenizer = data.tokenizer
    if config.model.vocab_size != tokenizer.vocab_size:
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, vocab_size=tokenizer.vocab_size))

    model = GPT(config.model).to(device)
    optimizer = make_optimizer(model, config, device)
    data_rng = torch.Generator().manual_seed(config.train.seed)
    state = ckpt.TrainerState()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".*.tmp"):  # half-written files of a process that was killed
        stale.unlink(missing_ok=True)
    metrics_path = out_dir / ckpt.METRICS_FILE
    if resume:
        state = ckpt.load_trainer_state(out_dir, model, optimizer)
        if state.torch_rng is not None:
            torch.set_rng_state(state.torch_rng)
        if state.data_rng is not None:
            data_rng.set_state(state.data_rng)
        _truncate_metrics(metrics_path, state.step)
        log(f"resuming {out_dir} at step {state.step:,}")
    else:
        metrics_path.unlink(missing_ok=True)
        tokenizer.save(out_dir / ckpt.TOKENIZER_FILE)
    ckpt.save_config(out_dir, config)

    dtype = choose_dtype(config.train.dtype, device)
    compiled = _maybe_compile(model, config.train.compile, device, log)
    byte_lengths = token_byte_lengths(tokenizer)
    t = config.train
    tokens_per_step = t.batch_size * t.grad_accum * config.model.context_length
    log(f"model: {model.num_parameters():,} parameters, {config.model.n_layer} layers, d_model {config.model.d_model}, "
        f"context {config.model.context_length}; {str(dtype).removeprefix('torch.')} on {device.type}; "
        f"{tokens_per_step:,} tokens/step")

    def progress() -> float:
        by_steps = state.step / t.max_steps
        by_time = state.elapsed_s / (60 * t.time_budget_min) if t.time_budget_min > 0 else 0.0
        return max(by_steps, by_time)

    def save() -> None:
        state.torch_rng = torch.get_rng_state()
        state.data_rng = data_rng.get_state()
        ckpt.save_trainer_state(out_dir, model, optimizer, state)
        ckpt.save_weights(out_dir, model, state.step)
        _plot_metrics(out_dir)

    def write_metrics(record: dict) -> None:
        with open(metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    last_eval: EvalResult | None = None
    bar = tqdm(total=1000, disable=not show_progress, unit="‰", dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}", initial=int(1000 * progress()))
    window_tokens, window_start = 0, time.perf_counter()
    tokens_per_s = 0.0
    model.train()
    try:
        while progress() < 1.0:
            step_start = time.perf_counter()
            lr = learning_rate(config, state.step, progress())
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = 0.0
            for _ in range(t.grad_accum):
                x, y = sample_batch(data.train.ids, t.batch_size, config.model.context_length, data_rng, device)
                with autocast(dtype, device):
                    loss = compiled(x, targets=y).loss / t.grad_accum
                loss.backward()
                loss_sum += loss.item()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip) if t.grad_clip > 0 else None
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            state.step += 1
            state.tokens_seen += tokens_per_step
            state.elapsed_s += time.perf_counter() - step_start
            window_tokens += tokens_per_step
            bar.update(int(1000 * min(1.0, progress())) - bar.n)

            is_last = progress() >= 1.0
            if state.step % t.log_every == 0 or is_last or state.step % t.eval_every == 0:
                now = time.perf_counter()
                tokens_per_s = window_tokens / max(now - window_start, 1e-9)
                window_tokens, window_start = 0, now
                record = {"step": state.step, "train_loss": round(loss_sum, 5), "lr": lr,
                          "tokens_per_s": round(tokens_per_s, 1), "tokens_seen": state.tokens_seen,
                          "elapsed_s": round(state.elapsed_s, 2)}
                if grad_norm is not None:
                    record["grad_norm"] = round(float(grad_norm), 4)
                if state.step % t.eval_every == 0 or is_last:
                    eval_tokens = 8 * t.eval_tokens if is_last else t.eval_tokens
                    last_eval = evaluate(model, data.val.ids, byte_lengths, eval_tokens, dtype, device)
                    record.update(val_loss=round(last_eval.loss, 5), val_bpb=round(last_eval.bpb, 5))
                    window_start = time.perf_counter()  # evaluation time is not training throughput
                    bar.write(f"step {state.step:>6,} | train loss {loss_sum:.3f} | val loss {last_eval.loss:.3f} "
                              f"| val bpb {last_eval.bpb:.3f} | {tokens_per_s:,.0f} tok/s")
                write_metrics(record)
                postfix = f"step {state.step:,} loss {loss_sum:.3f} {tokens_per_s:,.0f} tok/s"
                bar.set_postfix_str(postfix, refresh=False)
            if state.step % t.save_every == 0 and not is_last:
                save()
    except KeyboardInterrupt:
        bar.close()
        save()
        log(f"interrupted: saved step {state.step:,} to {out_dir} (continue with --resume)")
        raise
    bar.close()
    save()
    log(f"saved {out_dir} at step {state.step:,} ({state.elapsed_s:.0f} s of training)")
    return TrainResult(out_dir, state.step, last_eval, tokens_per_s, state.elapsed_s, model.num_parameters())


def _maybe_compile(model: GPT, setting: str, device: torch.device, log: Log) -> Callable:
    """torch.compile on GPUs by default; on CPUs only when asked (it did not pay off there, see README)."""
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return model
    try:
        return torch.compile(model)
    except Exception as err:  # compile is an optimisation: fall back rather than fail the run
        log(f"torch.compile unavailable ({err}); training uncompiled")
        return model


def _plot_metrics(out_dir: Path) -> None:
    from glassgpt.plots import plot_loss_curve

    plot_loss_curve(out_dir / ckpt.METRICS_FILE, out_dir / "loss_curve.png")
