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
The passage is a stretch of the corpus (`repeat_source="passage"`), tokens taken one by one
from scattered places in it (`"scattered"`: text with the corpus's word frequencies but no
sense, so the second time round nothing but copying predicts it), or token ids drawn uniformly
(`"random"`), whose first saying is no target at all: it would only teach the model to spread
its bets over every token.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from glassgpt.config import REPEAT_SOURCES

Batch = tuple[torch.Tensor, torch.Tensor]


def token_windows(
    ids: np.ndarray, starts: Sequence[int], context: int, device: torch.device | str = "cpu",
    periods: Sequence[int] | None = None, passages: np.ndarray | None = None, hide_first: bool = False,
) -> Batch:
    """Windows ids[s : s + context + 1] as int64 inputs x (B, T) and next-token targets y (B, T).
    With `periods`, row i is ids[s : s + periods[i]] said over and over to the same length (a
    period of context + 1 is the plain window). With `passages` (B, context + 1 token ids), a
    repeated row says passages[i, :periods[i]] instead, and with `hide_first` the targets of its
    first saying are -1 (no loss): only the repeats can be predicted."""
    periods = periods or [context + 1] * len(starts)
    rows, targets_hidden = [], []
    for i, (start, period) in enumerate(zip(starts, periods, strict=True)):
        repeated = period <= context
        passage = passages[i, :period] if passages is not None and repeated else ids[start : start + period]
        rows.append(np.resize(passage, context + 1))
        targets_hidden.append(period if hide_first and repeated else 0)  # its first saying, and the wrap back
    batch = torch.from_numpy(np.stack(rows).astype(np.int64)).to(device)
    x, y = batch[:, :-1], batch[:, 1:].clone()
    for i, hidden in enumerate(targets_hidden):
        y[i, :hidden] = -1
    return x, y


class WindowSampler:
    """Random windows of `ids` for each step, split into micro-batches and processes."""

    def __init__(self, ids: np.ndarray, context: int, batch_size: int, grad_accum: int = 1, *,
                 seed: int, rank: int = 0, world_size: int = 1, repeat_fraction: float = 0.0,
                 repeat_source: str = "passage", repeat_periods: tuple[int, int] = (0, 0),
                 device: torch.device | str = "cpu") -> None:
        if len(ids) < context + 2:
            raise ValueError(f"{len(ids)} tokens are too few for windows of {context + 1}")
        self.ids, self.context, self.device = ids, context, device
        if repeat_source not in REPEAT_SOURCES:
            raise ValueError(f"repeat_source must be one of {REPEAT_SOURCES}, got {repeat_source!r}")
        self.repeat_fraction, self.repeat_source = repeat_fraction, repeat_source
        # A repeated passage's length, drawn uniformly in [shortest, longest]; 0 = a quarter / a
        # half of the window (two to four copies of it per row), moved to meet the other end where
        # only that one is given and lies beyond it.
        asked_shortest, asked_longest = repeat_periods
        shortest = asked_shortest or min((context + 1) // 4, asked_longest or context)
        longest = asked_longest or max((context + 1) // 2, shortest)
        if repeat_fraction and not 1 <= shortest <= longest <= context:
            raise ValueError(f"repeated passages of {shortest}-{longest} tokens do not fit windows of {context}")
        self.repeat_periods = (shortest, longest)
        self.token_count = int(ids.max()) + 1 if repeat_source == "random" else 0  # "random" draws ids below it
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)

    def next_step(self) -> list[Batch]:
        """This process's micro-batches for the next optimizer step."""
        shape = (self.grad_accum, self.world_size, self.batch_size)
        starts = torch.randint(0, len(self.ids) - self.context - 1, shape, generator=self.generator)
        periods = torch.full(shape, self.context + 1)
        if self.repeat_fraction:  # the plain sampler draws nothing more (older runs resume alike)
            repeated = torch.rand(shape, generator=self.generator) < self.repeat_fraction
            drawn = torch.randint(self.repeat_periods[0], self.repeat_periods[1] + 1, shape, generator=self.generator)
            periods = torch.where(repeated, drawn, periods)
        passages = None
        if self.repeat_fraction and self.repeat_source == "scattered":
            positions = torch.randint(0, len(self.ids), (*shape, self.context + 1), generator=self.generator)
            passages = self.ids[positions.numpy()]
        elif self.repeat_fraction and self.repeat_source == "random":
            passages = torch.randint(0, self.token_count, (*shape, self.context + 1), generator=self.generator).numpy()
        return [token_windows(self.ids, starts[m, self.rank].tolist(), self.context, self.device,
                              periods[m, self.rank].tolist(), None if passages is None else passages[m, self.rank],
                              hide_first=self.repeat_source == "random")
                for m in range(self.grad_accum)]

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
