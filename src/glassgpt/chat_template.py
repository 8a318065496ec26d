"""The chat template: how a conversation becomes token ids, and which of those ids training learns.

A conversation is OpenAI-style: a list of messages ``{"role": ..., "content": ...}`` with an
optional leading ``system`` message, then ``user`` and ``assistant`` turns alternating, user first.
It is rendered with the tokenizer's reserved special tokens::

    <|bos|> <|user_start|> [system text, blank line] user text <|user_end|>
            <|assistant_start|> assistant text <|assistant_end|>  <|user_start|> ...

The system text has no tokens of its own: it opens the first user turn (as nanochat does), so a
small model needs to learn no extra role. Message text is always encoded as plain text, so a
user who types ``<|assistant_end|>`` gets those characters, never the control token.

`render_conversation` returns the ids and a training mask (1 where the model is trained to
predict the token: the assistant's text and its end token); `render_prompt` returns the ids that
ask the model for the next assistant turn. Both are pure functions of the tokenizer and the
messages; supervised fine-tuning, `chat` and the server all use them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from glassgpt.errors import GlassError
from glassgpt.tokenizer import Tokenizer

ROLES = ("system", "user", "assistant")
#: The run-folder stages whose models were tuned on this template.
CHAT_STAGES = ("sft", "rl")


@dataclass(frozen=True)
class ChatTokens:
    """The ids of the template's control tokens in one tokenizer."""

    bos: int
    user_start: int
    user_end: int
    assistant_start: int
    assistant_end: int

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> ChatTokens:
        """The control-token ids, or a clear error for a tokenizer without them (e.g. GPT-2's)."""
        names = {"user_start": "<|user_start|>", "user_end": "<|user_end|>",
                 "assistant_start": "<|assistant_start|>", "assistant_end": "<|assistant_end|>"}
        missing = [text for text in names.values() if text not in tokenizer.special_ids]
        if missing:
            raise GlassError(f"this {tokenizer.kind} tokenizer has no chat tokens ({', '.join(missing)}): "
                             "chat needs a glassgpt-trained tokenizer (bpe or char)")
        return cls(bos=tokenizer.bos_id, **{field: tokenizer.special_ids[text] for field, text in names.items()})


def validate_conversation(messages: object, *, ends_with: str | None = None) -> list[dict[str, str]]:
    """`messages` as a checked list of {"role", "content"} dicts, or a GlassError saying what is wrong.

    `ends_with` = "user" or "assistant" requires the last message's role (a prompt must end with
    the user's turn; a training example with the assistant's).
    """
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise GlassError("a conversation must be a non-empty list of messages")
    checked: list[dict[str, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or set(message) - {"role", "content", "name"}:
            raise GlassError(f"message {i + 1} must be an object with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise GlassError(f"message {i + 1} has role {role!r}: use one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise GlassError(f"message {i + 1} ({role}) must have text 'content'")
        checked.append({"role": role, "content": content})
    turns = checked[1:] if checked[0]["role"] == "system" else checked
    if not turns:
        raise GlassError("a conversation needs at least one user message after the system message")
    for i, message in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if message["role"] != expected:
            where = i + 1 + (len(checked) - len(turns))
            raise GlassError(f"message {where} is from the {message['role']} but the {expected} speaks next: "
                             "after an optional system message, user and assistant alternate, user first")
    if ends_with is not None and turns[-1]["role"] != ends_with:
        raise GlassError(f"the conversation must end with a message from the {ends_with}")
    return checked


def _render(tokenizer: Tokenizer, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    tokens = ChatTokens.of(tokenizer)
    system = ""
    if messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    ids, mask = [tokens.bos], [0]
    for i, message in enumerate(messages):
        if message["role"] == "user":
            text = f"{system}\n\n{message['content']}" if i == 0 and system else message["content"]
            part = [tokens.user_start, *tokenizer.encode(text), tokens.user_end]
            ids += part
            mask += [0] * len(part)
        else:
            answer = [*tokenizer.encode(message["content"]), tokens.assistant_end]
            ids += [tokens.assistant_start, *answer]
            mask += [0] + [1] * len(answer)
    return ids, mask


def render_conversation(tokenizer: Tokenizer, messages: object) -> tuple[list[int], list[int]]:
    """Token ids of a whole conversation and its training mask (same length).

    mask[i] = 1 where ids[i] is a token the model learns to produce: each assistant message's
    text and its `<|assistant_end|>`; 0 for everything else (bos, user turns, the system text,
    `<|assistant_start|>`, which the prompt supplies).
    """
    return _render(tokenizer, validate_conversation(messages, ends_with="assistant"))


def render_prompt(tokenizer: Tokenizer, messages: object) -> list[int]:
    """Token ids asking for the next assistant message: the conversation so far (ending with the
    user's turn) followed by `<|assistant_start|>`. Generation stops at `<|assistant_end|>`."""
    ids, _ = _render(tokenizer, validate_conversation(messages, ends_with="user"))
    return ids + [ChatTokens.of(tokenizer).assistant_start]


def is_chat_stage(stage: str) -> bool:
    """Whether a run of this stage was tuned on the chat template (base models were not)."""
    return stage in CHAT_STAGES
