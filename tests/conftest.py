"""Shared fixtures: a tiny model trained in seconds on a slice of the built-in corpus."""

from __future__ import annotations

import dataclasses
import json
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


#: A few conversations the `tiny_chat_run` fixture learns by heart.
CHATS = [
    [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "Answer: 5"}],
    [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am glassgpt."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"},
     {"role": "assistant", "content": "Goodbye!"}],
]


@pytest.fixture(scope="session")
def chats_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("chats") / "chats.jsonl"
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in CHATS), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_chat_run(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path, chats_jsonl: Path) -> Path:
    """`tiny_run` chat-tuned on `CHATS` for 80 steps (a few seconds): it answers them by heart."""
    from glassgpt.train.sft import sft, sft_config

    out = tmp_path_factory.mktemp("runs") / "tiny-chat"
    config = sft_config(tiny_run, data=str(chats_jsonl),
                        train={"max_steps": 80, "batch_size": 4, "lr": 1e-2, "warmup_steps": 2, "eval_every": 40,
                               "save_every": 80, "log_every": 10, "dtype": "fp32"})
    sft(config, out, show_progress=False, log=lambda _: None)
    return out
