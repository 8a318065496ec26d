"""Optimizers and the learning-rate schedule every training stage uses."""

from __future__ import annotations

import math

import torch
from torch import nn

from glassgpt.config import TrainConfig


def make_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on norm gains). Fused kernel where available."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": train.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=train.lr, betas=(train.beta1, train.beta2), fused=True)
    except (RuntimeError, TypeError):  # older torch, or parameters (e.g. sharded) the fused kernel refuses
        return torch.optim.AdamW(groups, lr=train.lr, betas=(train.beta1, train.beta2))


def learning_rate(train: TrainConfig, step: int, progress: float) -> float:
    """Linear warmup over `warmup_steps`, then cosine from lr to lr * min_lr_ratio as progress 0 -> 1."""
    if step < train.warmup_steps:
        return train.lr * (step + 1) / train.warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return train.lr * (train.min_lr_ratio + (1.0 - train.min_lr_ratio) * cosine)
