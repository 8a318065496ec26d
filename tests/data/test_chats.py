"""Reading conversations from JSONL (errors name the line) and packing them into SFT batches
whose targets are exactly the template's trained tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from glassgpt.chat_template import render_conversation
from glassgpt.data.chats import (
    ChatBatches,
    RenderedChat,
    fixed_batches,
    pack_rows,
    read_conversations,
    render_all,
)
from glassgpt.errors import GlassError
from glassgpt.tokenizer import Tokenizer

GOOD = {"messages": [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "Answer: 4"}]}


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train_bpe(["What is two plus two? Answer: four. Hello there, who are you?"] * 20, vocab_size=300)


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_conversations_and_skips_blank_lines(tmp_path):
    system = {"messages": [{"role": "system", "content": "Be brief."}, *GOOD["messages"]]}
    path = write(tmp_path, json.dumps(GOOD), "", json.dumps(system))
    assert read_conversations(path) == [GOOD["messages"], system["messages"]]


@pytest.mark.parametrize(("bad_line", "message"), [
    ("{not json", "line 3 is not valid JSON"),
    ("[1, 2]", "line 3 needs a \"messages\" list"),
    (json.dumps({"conversation": []}), "line 3 needs a \"messages\" list"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}]}), "line 3: the conversation must end with a "
                                                                    "message from the assistant"),
    (json.dumps({"messages": [{"role": "bot", "content": "hi"}]}), "line 3: message 1 has role 'bot'"),
])
def test_a_bad_line_is_named_by_its_number(tmp_path, bad_line, message):
    path = write(tmp_path, json.dumps(GOOD), json.dumps(GOOD), bad_line, json.dumps(GOOD))
    with pytest.raises(GlassError, match=message.replace("(", r"\(").replace("[", r"\[")):
        read_conversations(path)


def test_empty_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(GlassError, match="has no conversations"):
        read_conversations(write(tmp_path, "", "  "))
    with pytest.raises(GlassError, match="no such file"):
        read_conversations(tmp_path / "nope.jsonl")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"messages": "caf\xe9"}\n')
    with pytest.raises(GlassError, match="not UTF-8"):
        read_conversations(latin)


def conversation(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def test_batches_train_exactly_the_answer_tokens_of_each_conversation(tok):
    convs = [conversation("What is two plus two?", "four"), conversation("Who are you?", "Hello there")]
    chats = render_all(tok, convs)
    (x, y), = fixed_batches(chats, context=60, pad_id=2, batch_size=4)
    assert x.shape == y.shape == (1, 60)  # both fit one row
    ids = [i for c in chats for i in c.ids]
    mask = [m for c in chats for m in c.mask]
    assert x[0, :len(ids) - 1].tolist() == ids[:-1]
    trained = [t for t in y[0].tolist() if t != -1]
    # the reference: the template's own mask, conversation by conversation
    assert trained == [i for conv in convs for i, m in zip(*render_conversation(tok, conv), strict=True) if m]
    assert y[0, len(ids) - 1:].eq(-1).all()  # padding is never trained
    for pos in range(len(ids) - 1):  # the target at pos is the next token, where the mask says so
        assert y[0, pos].item() == (ids[pos + 1] if mask[pos + 1] else -1)


def test_rows_are_cut_to_the_context_and_filled_greedily(tok):
    long = RenderedChat(list(range(100)), [1] * 100)
    short = RenderedChat([5, 6, 7], [0, 1, 1])
    rows, masks = pack_rows([short, long, short, short], context=9, pad_id=0)
    assert [len(r) for r in rows] == [10, 10, 10] and rows[1] == list(range(10))
    assert rows[0] == [5, 6, 7, 0, 0, 0, 0, 0, 0, 0] and rows[2] == [5, 6, 7, 5, 6, 7, 0, 0, 0, 0]
    assert masks[2] == [0, 1, 1, 0, 1, 1, 0, 0, 0, 0]


def test_random_batches_repeat_from_a_seed_and_resume_from_a_state(tok):
    chats = render_all(tok, [conversation(f"What is {i}?", "four" * (i % 3 + 1)) for i in range(20)])
    a = ChatBatches(chats, 32, 3, 2, pad_id=2, seed=5)
    b = ChatBatches(chats, 32, 3, 2, pad_id=2, seed=5)
    first = a.next_step()
    assert len(first) == 2 and first[0][0].shape == (3, 32)
    assert all(torch.equal(p, q) for s, t in zip(first, b.next_step(), strict=True) for p, q in zip(s, t, strict=True))
    state = a.get_state()
    expected = a.next_step()
    b.set_state(state)
    assert all(torch.equal(p, q) for s, t in zip(expected, b.next_step(), strict=True) for p, q in zip(s, t, strict=True))
    assert not torch.equal(first[0][0], expected[0][0])
