"""Fixtures of the training tests: a run stopped by Ctrl-C in the middle of a step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from glassgpt.config import RunConfig
from glassgpt.data.batches import WindowSampler
from glassgpt.train.pretrain import pretrain


@pytest.fixture
def interrupted_at_step(monkeypatch: pytest.MonkeyPatch) -> Callable[[RunConfig, Path, int], None]:
    """Train `config` into `out` and press Ctrl-C while step `step` takes its batch."""

    def train_until_interrupted(config: RunConfig, out: Path, step: int) -> None:
        real_next_step = WindowSampler.next_step
        calls = {"n": 0}

        def next_step_then_interrupt(self):
            calls["n"] += 1
            if calls["n"] == step:
                raise KeyboardInterrupt  # like Ctrl-C in the middle of the step
            return real_next_step(self)

        monkeypatch.setattr(WindowSampler, "next_step", next_step_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            pretrain(config, out, show_progress=False, log=lambda _: None)
        monkeypatch.setattr(WindowSampler, "next_step", real_next_step)

    return train_until_interrupted
