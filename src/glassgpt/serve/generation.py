"""A request's prompts -> `Engine.generate_ids` -> a stream of per-token events, and back to JSON.

The engine owns sampling, log-probabilities, stop ids and the n samples of one prefill; its
`TextStream` owns turning ids into text (whole UTF-8 characters, stop strings cut and never
shown). This module only wires them to a `Job`: each new token becomes a `TokenEvent` (the text
that became safe to show, the id, its log-probability and the top alternatives), each finished
choice a `FinishEvent`; a cancelled job (its client left) stops every sample at the next token.
It also shapes log-probabilities the two ways OpenAI's API does (legacy completions, chat).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from glassgpt.engine import Engine, SampleIds, SamplingConfig, TextStream
from glassgpt.serve.protocol import openai_finish_reason
from glassgpt.serve.scheduler import Job
from glassgpt.tokenizer import Tokenizer


@dataclass(frozen=True)
class TokenEvent:
    index: int  # the choice: prompt number * n + sample number
    text: str  # text that became safe to show with this token (may be empty)
    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...]  # the most likely ids at this step (when asked for)


@dataclass(frozen=True)
class FinishEvent:
    index: int
    text: str  # the text held back until the end (a partial stop string that did not complete)
    finish_reason: str  # OpenAI's: "stop" or "length"
    tokens: int  # new tokens in this choice


@dataclass(frozen=True)
class GenerationSummary:
    prompt_tokens: int
    completion_tokens: int


def generation_work(engine: Engine, prompts: Sequence[list[int]], sampling: SamplingConfig,
                    stop_ids: Sequence[int] = (), top_logprobs: int = 0,
                    count_tokens: Callable[[int], None] | None = None) -> Callable[[Job], GenerationSummary]:
    """The work of one generation request: every prompt in turn, n samples each, as events."""

    def work(job: Job) -> GenerationSummary:
        completion_tokens = 0
        for p, prompt_ids in enumerate(prompts):
            if job.cancelled.is_set():
                break
            base = p * sampling.num_samples
            streams = [TextStream(engine.tokenizer, sampling.stop) for _ in range(sampling.num_samples)]

            def on_step(i: int, sample: SampleIds, streams: list[TextStream] = streams, base: int = base) -> bool:
                token = sample.token_ids[-1]
                top = tuple(sample.top_logprobs[-1]) if top_logprobs else ()
                job.emit(TokenEvent(base + i, streams[i].push(token), token, sample.logprobs[-1], top))
                return streams[i].stopped or job.cancelled.is_set()

            result = engine.generate_ids(prompt_ids, sampling, stop_ids, top_logprobs=top_logprobs,
                                         on_step=on_step)
            for i, sample in enumerate(result.samples):
                completion_tokens += len(sample.token_ids)
                job.emit(FinishEvent(base + i, streams[i].finish(), openai_finish_reason(sample.finish_reason),
                                     len(sample.token_ids)))
            if count_tokens is not None:
                count_tokens(sum(len(s.token_ids) for s in result.samples))
        return GenerationSummary(sum(len(p) for p in prompts), completion_tokens)

    return work


# ----------------------------------------------------------------------------- log-probabilities


def _entry(tokenizer: Tokenizer, token_id: int, logprob: float) -> dict:
    return {"token": tokenizer.token_str(token_id), "logprob": logprob,
            "bytes": list(tokenizer.token_bytes(token_id))}


def chat_logprobs(tokenizer: Tokenizer, events: Sequence[TokenEvent]) -> dict:
    """`choices[i].logprobs` of a chat completion (or chunk): one entry per token."""
    content = []
    for event in events:
        entry = _entry(tokenizer, event.token_id, event.logprob)
        entry["top_logprobs"] = [_entry(tokenizer, i, lp) for i, lp in event.top]
        content.append(entry)
    return {"content": content, "refusal": None}


def completion_logprobs(tokenizer: Tokenizer, events: Sequence[TokenEvent], offset: int = 0) -> dict:
    """`choices[i].logprobs` of a legacy completion: parallel lists, offsets into the text."""
    tokens, token_logprobs, top, offsets = [], [], [], []
    for event in events:
        piece = tokenizer.token_str(event.token_id)
        tokens.append(piece)
        token_logprobs.append(event.logprob)
        top.append({tokenizer.token_str(i): lp for i, lp in event.top})
        offsets.append(offset)
        offset += len(event.text)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top, "text_offset": offsets}
