"""Fixtures of the serve tests: the tiny model served as a base model and as a chat model."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from glassgpt.runs import RunFolder, load_run
from live_server import Running, serving


@pytest.fixture(scope="session")
def chat_run_dir(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run relabelled as a chat model (stage sft): nonsense answers, but the protocol is real."""
    folder = RunFolder(tiny_run).copy_for_inference(tmp_path_factory.mktemp("runs") / "tiny-chat")
    folder.save_config(dataclasses.replace(folder.load_config(), stage="sft", parent=str(tiny_run)))
    return folder.path


@pytest.fixture(scope="module")
def base_server(tiny_run: Path) -> Iterator[Running]:
    with serving(load_run(tiny_run)) as running:
        yield running


@pytest.fixture(scope="module")
def chat_server(chat_run_dir: Path) -> Iterator[Running]:
    with serving(load_run(chat_run_dir)) as running:
        yield running
