"""Shared fixtures: a tiny model trained in seconds on a slice of the built-in corpus."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from glassgpt.config import preset
from glassgpt.data.corpus import builtin_documents
from glassgpt.train.pretrain import pretrain


@pytest.fixture(scope="session")
def small_text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ~120 KB from each built-in work (enough for a 512-token BPE)."""
    folder = tmp_path_factory.mktemp("text")
    for doc in builtin_documents():
        (folder / f"{doc.name}.txt").write_text(doc.text[:120_000], encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, small_text_dir: Path) -> Path:
    """A run folder with the `tiny` preset trained for 60 steps (about 10 s on 2 cores)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    config = preset("tiny")
    config = dataclasses.replace(config, data=str(small_text_dir),
                                 train=dataclasses.replace(config.train, max_steps=60, dtype="fp32"))
    pretrain(config, out, cache_dir=None, show_progress=False, log=lambda _: None)
    return out
