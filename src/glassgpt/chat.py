"""Chatting with a chat-tuned model: the conversation so far in, the assistant's answer out.

A `ChatSession` keeps the history, renders it with the chat template (`render_prompt`: the
conversation ending with `<|assistant_start|>`), and lets the engine continue it until the
model writes `<|assistant_end|>`. The model sees only its context: when the history no longer
fits (with room left for the answer), the oldest turns are dropped and the reply says how many.
`glassgpt chat` (interactive or one question) and `eval-chat` both go through here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from glassgpt.chat_template import ChatTokens, is_chat_stage, render_prompt
from glassgpt.engine import Engine, SamplingConfig
from glassgpt.errors import GlassError
from glassgpt.runs import LoadedRun, RunFolder

#: Sampling for chat unless the user says otherwise: a little randomness, answers of a sensible length.
CHAT_SAMPLING = SamplingConfig(temperature=0.6, top_k=50, max_new_tokens=200)


def load_chat_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedRun:
    """A chat-tuned run (stage sft or rl), or a GlassError that says how to make one."""
    config = RunFolder(path).load_config()
    if not is_chat_stage(config.stage):
        raise GlassError(f"{path} is a {config.stage} model, not a chat model: chat-tune it first with "
                         f"`glassgpt sft --model {path} --out runs/chat`, then chat with --model runs/chat")
    return RunFolder(path).load(device)


@dataclass(frozen=True)
class Reply:
    text: str
    finish_reason: str  # "stop_id" = the model ended its answer; "length" = cut at max_new_tokens
    num_tokens: int
    dropped_turns: int = 0  # earlier exchanges left out to fit the context
    cropped_tokens: int = 0  # tokens cut from the start of a message too long for the context even alone

    @property
    def finished(self) -> bool:
        return self.finish_reason == "stop_id"


@dataclass
class ChatSession:
    """A conversation with a chat model: history, sampling settings, and fitting into the context."""

    engine: Engine
    sampling: SamplingConfig = CHAT_SAMPLING
    system: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, run: LoadedRun, sampling: SamplingConfig = CHAT_SAMPLING, system: str | None = None) -> ChatSession:
        return cls(Engine(run.model, run.tokenizer), sampling, system)

    def reset(self) -> None:
        self.history.clear()

    def prompt_for(self, message: str) -> tuple[list[int], int]:
        """Prompt ids for `message` after the history, and how many of the oldest exchanges
        (a user message and its answer) had to be left out to keep room for the answer."""
        context = self.engine.context
        room = min(self.sampling.max_new_tokens, context // 2)  # kept free for the answer
        turns = [*self.history, {"role": "user", "content": message}]
        dropped = 0
        while True:
            messages = ([{"role": "system", "content": self.system}] if self.system else []) + turns
            ids = render_prompt(self.engine.tokenizer, messages)
            if len(ids) + room <= context or len(turns) == 1:
                return ids, dropped
            turns, dropped = turns[2:], dropped + 1

    def ask(self, message: str, on_text: Callable[[str], None] | None = None) -> Reply:
        """The model's answer to `message` (streamed to `on_text`), added to the history."""
        if not message.strip():
            raise GlassError("the message is empty: type a question")
        ids, dropped = self.prompt_for(message)
        if dropped:
            self.history = self.history[2 * dropped:]
        stop = ChatTokens.of(self.engine.tokenizer).assistant_end
        result = self.engine.complete_ids(ids, self.sampling, stop_ids=[stop],
                                          on_text=(lambda _, text: on_text(text)) if on_text else None)
        completion = result.completions[0]
        answer = completion.text.strip()
        self.history += [{"role": "user", "content": message}, {"role": "assistant", "content": answer}]
        return Reply(answer, completion.finish_reason, len(completion.token_ids), dropped, result.cropped_tokens)
