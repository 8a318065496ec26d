"""Training batches: random windows of a token stream, the same whichever way they are split.

Each optimizer step reads `grad_accum x world_size x batch_size` windows of `context + 1`
tokens. `WindowSampler` draws the starts of all of them from one generator, seeded alike in
every process, and each process takes its own slice: micro-step m of rank r reads rows
[m, r]. So two processes with batch b read exactly the windows one process with batch 2b
reads, and k micro-batches of b exactly those of one batch of k*b: changing how a batch is
split never changes what is learned. The generator's state is all a checkpoint needs to
continue the same sequence of batches.

With `repeat_fraction` > 0, that share of the windows (drawn from the same generator) is a
passage followed by itself again, up to the window's end: text that repeats is what teaches a
model to copy from its context ("induction heads"), and books rarely repeat within a window.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

Batch = tuple[torch.Tensor, torch.Tensor]


def token_windows(
    ids: np.ndarray, starts: Sequence[int], context: int, device: torch.device | str = "cpu"
) -> Batch:
    """Windows ids[s : s + context + 1] as int64 inputs x (B, T) and next-token targets y (B, T)."""
    rows = np.stack([ids[s : s + context + 1] for s in starts]).astype(np.int64)
    batch = torch.from_numpy(rows).to(device)
    return batch[:, :-1], batch[:, 1:]


def repeat_passages(ids: np.ndarray, starts: Sequence[int], lengths: Sequence[int], context: int) -> np.ndarray:
    """Rows of context + 1 tokens: ids[s : s + n] over and over (n = the row's length), cut to fit."""
    rows = [np.resize(ids[s : s + n], context + 1) for s, n in zip(starts, lengths, strict=True)]
    return np.stack(rows).astype(np.int64)


class WindowSampler:
    """Random windows of `ids` for each step, split into micro-batches and processes."""

    def __init__(self, ids: np.ndarray, context: int, batch_size: int, grad_accum: int = 1, *,
                 seed: int, rank: int = 0, world_size: int = 1, repeat_fraction: float = 0.0,
                 device: torch.device | str = "cpu") -> None:
        if len(ids) < context + 2:
            raise ValueError(f"{len(ids)} tokens are too few for windows of {context + 1}")
        self.ids, self.context, self.device = ids, context, device
        self.repeat_fraction = repeat_fraction
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)

    def next_step(self) -> list[Batch]:
        """This process's micro-batches for the next optimizer step."""
        shape = (self.grad_accum, self.world_size, self.batch_size)
        starts = torch.randint(0, len(self.ids) - self.context - 1, shape, generator=self.generator)
        if not self.repeat_fraction:  # the plain sampler draws nothing more (older runs resume alike)
            return [token_windows(self.ids, starts[m, self.rank].tolist(), self.context, self.device)
                    for m in range(self.grad_accum)]
        repeated = torch.rand(shape, generator=self.generator) < self.repeat_fraction
        # A passage of a quarter to a half of the window: two to four copies of it per row.
        lengths = torch.randint((self.context + 1) // 4, (self.context + 1) // 2 + 1, shape, generator=self.generator)
        batches = []
        for m in range(self.grad_accum):
            x, y = token_windows(self.ids, starts[m, self.rank].tolist(), self.context, self.device)
            rows = repeated[m, self.rank].nonzero()[:, 0]
            if len(rows):
                copies = torch.from_numpy(repeat_passages(self.ids, starts[m, self.rank, rows].tolist(),
                                                          lengths[m, self.rank, rows].tolist(), self.context))
                x, y = x.clone(), y.clone()
                x[rows.to(x.device)], y[rows.to(y.device)] = copies[:, :-1].to(x.device), copies[:, 1:].to(y.device)
            batches.append((x, y))
        return batches

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
