"""Measuring a model on text: cross-entropy loss and bits per byte.

Bits per byte = total surprise in bits / UTF-8 bytes of text. Unlike loss per token, it does
not depend on the tokenizer, so a character model, a BPE model, an n-gram model and GPT-2's
tokenizer can be compared on the same text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from glassgpt.data.batches import token_windows
from glassgpt.errors import GlassError
from glassgpt.runtime import SINGLE, Distributed, all_reduce, autocast, unwrap
from glassgpt.tokenizer import Tokenizer


@dataclass(frozen=True)
class EvalResult:
    """Validation loss (nats per token) and bits per byte of text (tokenizer-independent)."""

    loss: float
    bpb: float
    tokens: int


def token_byte_lengths(tokenizer: Tokenizer) -> torch.Tensor:
    """UTF-8 bytes of each token id (special tokens count 0): the bridge from nats to bits per byte."""
    special = set(tokenizer.special_ids.values())
    return torch.tensor(
        [0 if i in special else len(tokenizer.token_bytes(i)) for i in range(tokenizer.vocab_size)],
        dtype=torch.float64,
    )


@torch.no_grad()
def evaluate(model: torch.nn.Module, ids: np.ndarray, byte_lengths: torch.Tensor, max_tokens: int,
             dtype: torch.dtype, device: torch.device, batch_size: int = 16,
             distributed: Distributed = SINGLE) -> EvalResult:
    """Loss and bits per byte on up to `max_tokens` targets, in windows spread evenly over `ids`.

    With several processes each reads its share of the windows and the sums are combined, so
    every process gets the same result. The window count is a multiple of the process count,
    so every process runs the same number of forward passes (a sharded model needs that).
    """
    config = unwrap(model).config
    context = min(config.context_length, len(ids) - 1)
    world = distributed.world_size
    n_windows = max(1, min(math.ceil(max_tokens / context), (len(ids) - 1) // context))
    n_windows = max(world, n_windows - n_windows % world)
    starts = np.linspace(0, len(ids) - context - 1, n_windows).astype(np.int64)
    starts = starts[distributed.rank::world]
    was_training = model.training
    model.eval()
    total_nats, total_bytes, total_tokens = 0.0, 0.0, 0.0
    try:
        for i in range(0, len(starts), batch_size):
            x, y = token_windows(ids, starts[i:i + batch_size], context, device)
            with autocast(dtype, device):
                logits = model(x).logits
            nats = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum")
            total_nats += nats.item()
            total_bytes += byte_lengths[y.flatten().cpu()].sum().item()
            total_tokens += y.numel()
    finally:
        model.train(was_training)
    total_nats, total_bytes, total_tokens = all_reduce([total_nats, total_bytes, total_tokens], "sum",
                                                       distributed, device)
    return EvalResult(total_nats / total_tokens, total_nats / math.log(2) / max(total_bytes, 1.0),
                      int(total_tokens))


def bits_per_byte(run_dir: str | Path, text: str, max_tokens: int = 1_000_000) -> EvalResult:
    """Bits per byte of a saved model on `text` (evaluated in non-overlapping context windows)."""
    from glassgpt.runs import load_run

    if not text.strip():
        raise GlassError("the text to evaluate is empty")
    run = load_run(run_dir)
    ids = np.asarray([run.tokenizer.bos_id, *run.tokenizer.encode(text)], dtype=np.int64)
    if len(ids) < 2:
        raise GlassError("the text to evaluate is too short: it needs at least one token")
    return evaluate(run.model, ids, token_byte_lengths(run.tokenizer), max_tokens, torch.float32,
                    torch.device("cpu"))
