"""The chat template: ids, training mask, validation, and special-token text kept as plain text."""

from __future__ import annotations

import pytest

from glassgpt.chat_template import ChatTokens, is_chat_stage, render_conversation, render_prompt
from glassgpt.errors import GlassError
from glassgpt.tokenizer import Tokenizer

TEXT = ["What is two plus two? It is four. Count the letters in a word, then answer."] * 20


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train_bpe(TEXT, vocab_size=300)


def test_a_two_turn_conversation_renders_with_control_tokens_and_trains_only_the_answers(tok):
    t = ChatTokens.of(tok)
    messages = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"},
                {"role": "user", "content": "And 3 + 3?"}, {"role": "assistant", "content": "6"}]
    ids, mask = render_conversation(tok, messages)
    expected = ([t.bos, t.user_start, *tok.encode("What is 2 + 2?"), t.user_end, t.assistant_start]
                + tok.encode("4") + [t.assistant_end]
                + [t.user_start, *tok.encode("And 3 + 3?"), t.user_end, t.assistant_start]
                + tok.encode("6") + [t.assistant_end])
    assert ids == expected and len(mask) == len(ids)
    trained = [i for i, m in zip(ids, mask, strict=True) if m]
    assert trained == tok.encode("4") + [t.assistant_end] + tok.encode("6") + [t.assistant_end]
    # the round trip: the text between the control tokens is the messages' text
    assert tok.decode(ids) == ("<|bos|><|user_start|>What is 2 + 2?<|user_end|><|assistant_start|>4"
                               "<|assistant_end|><|user_start|>And 3 + 3?<|user_end|><|assistant_start|>6"
                               "<|assistant_end|>")


def test_the_prompt_is_the_conversation_up_to_the_assistant_start(tok):
    t = ChatTokens.of(tok)
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    full, _ = render_conversation(tok, conversation)
    prompt = render_prompt(tok, conversation[:1])
    assert prompt[-1] == t.assistant_start and full[: len(prompt)] == prompt


def test_a_system_message_opens_the_first_user_turn_untrained(tok):
    ids, mask = render_conversation(tok, [{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "Hi"},
                                          {"role": "assistant", "content": "Hello"}])
    assert "<|user_start|>Be brief.\n\nHi<|user_end|>" in tok.decode(ids)
    assert tok.decode([i for i, m in zip(ids, mask, strict=True) if m]) == "Hello<|assistant_end|>"


def test_special_token_text_typed_by_a_user_stays_plain_text(tok):
    t = ChatTokens.of(tok)
    ids = render_prompt(tok, [{"role": "user", "content": "say <|assistant_end|> now"}])
    assert ids.count(t.assistant_end) == 0 and ids.count(t.assistant_start) == 1
    assert "<|assistant_end|>" in tok.decode(ids)


@pytest.mark.parametrize(("messages", "message"), [
    ([], "non-empty list"),
    ("hello", "non-empty list"),
    ([{"role": "robot", "content": "x"}], "role 'robot'"),
    ([{"role": "user", "content": 3}], "text 'content'"),
    ([{"role": "user"}], "text 'content'"),
    ([{"role": "user", "content": "a", "extra": 1}], "'role' and 'content'"),
    ([{"role": "assistant", "content": "a"}], "user and assistant alternate"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "message 2 is from the user"),
    ([{"role": "system", "content": "a"}], "at least one user message"),
    ([{"role": "user", "content": "a"}], "must end with a message from the assistant"),
])
def test_malformed_conversations_get_a_clear_error(tok, messages, message):
    with pytest.raises(GlassError, match=message):
        render_conversation(tok, messages)


def test_a_prompt_must_end_with_the_user(tok):
    with pytest.raises(GlassError, match="end with a message from the user"):
        render_prompt(tok, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])


def test_gpt2s_tokenizer_has_no_chat_tokens():
    with pytest.raises(GlassError, match="no chat tokens"):
        ChatTokens.of(Tokenizer.gpt2())


def test_chat_stages():
    assert is_chat_stage("sft") and is_chat_stage("rl")
    assert not is_chat_stage("pretrain") and not is_chat_stage("import")
