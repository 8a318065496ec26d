"""Generation: the loop that turns next-token probabilities into tokens, and tokens into text.

The model only scores; this engine decides. One step = logits for the last position ->
temperature -> top-k / top-p filtering -> pick a token (argmax at temperature 0, otherwise a
random draw) -> append -> repeat. The prompt is read once ("prefill") into a KV cache so that
each new token costs one position of work ("decode"). Several samples of one prompt share the
prefill (the cache is copied n times) and run as one batch. Past the context, a rotary (Llama-
style) model's cache rolls: each new token replaces the oldest position, so every token costs one
position of work and sees the last `context` positions (`glassgpt.model.KVCache`). A model with
learned positions (GPT-2) has no positions past its context, so its window slides instead: when
the cache is full, the last three quarters of the context are read in again as a fresh prompt.

Two layers:

* `Engine.generate_ids` works on token ids and knows no text: prompt ids in; per sample the new
  ids, the model's log-probability of each, and why it stopped (length, eos or another stop id,
  or the caller's `on_token` asking to stop). This is what RL (ids and log-probs) and a chat
  server (prompts built as ids) need.
* `Engine.generate` is text on top of it: encode the prompt, stream each sample's tokens
  through an incremental decoder that never splits a UTF-8 character and never shows the start
  of a stop string that is then cut, and stop a sample once its text holds a stop string.

Neither changes the caller's model: generation runs in eval mode without gradients, and each
module's train/eval flag is put back afterwards, also when something fails.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from glassgpt.errors import GlassError
from glassgpt.model import GPT, KVCache
from glassgpt.tokenizer import Tokenizer


@dataclass(frozen=True)
class SamplingConfig:
    """How to choose each next token, and when to stop."""

    temperature: float = 1.0  # 0 = always the most likely token (greedy, deterministic)
    top_k: int = 0  # 0 = no limit; else only the k most likely tokens may be drawn
    top_p: float = 1.0  # nucleus: only the smallest set of tokens whose probability reaches p
    max_new_tokens: int = 200
    num_samples: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()  # text layer: stop when the text produces any of these (not included)
    stop_at_eos: bool = True  # the tokenizer's eos id is a stop id (on top of any given stop ids)

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise GlassError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise GlassError(f"top-k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise GlassError(f"top-p must be in (0, 1] (1 = off), got {self.top_p}")
        if self.max_new_tokens < 1:
            raise GlassError(f"max new tokens must be >= 1, got {self.max_new_tokens}")
        if self.num_samples < 1:
            raise GlassError(f"number of samples must be >= 1, got {self.num_samples}")
        if any(not s for s in self.stop):
            raise GlassError("stop strings must not be empty")


@dataclass
class SampleIds:
    """One sample at the token level.

    `logprobs[j]` is log p(token_ids[j] | prompt and token_ids[:j]) under the model itself:
    log-softmax of the raw logits, at temperature 1, before top-k / top-p. That is the model's
    own probability (what RL's policy term and scoring want), the same whatever settings drew
    the token. The probability under the sampling distribution would change with the settings
    (and be 1 for every greedy pick); recompute it from the logits if an importance ratio needs
    it. Past the context it is conditioned on the window the engine used.
    """

    token_ids: list[int]  # the new tokens; a stop id that ended the sample is not among them
    logprobs: list[float]  # one per token id
    finish_reason: str  # "length" | "eos" | "stop_id" (another stop id) | "stop" (on_token said so)
    stop_id: int | None = None  # the stop id that ended the sample ("eos" / "stop_id")
    stop_logprob: float | None = None  # its log-probability, as for `logprobs`
    # When asked for (`generate_ids(top_logprobs=k)`): per token id, the k most likely ids at that
    # step with their log-probabilities, as for `logprobs` (an API's "top_logprobs").
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)


@dataclass
class IdsResult:
    prompt_ids: list[int]  # as read, after cropping
    samples: list[SampleIds]
    cropped_tokens: int  # prompt tokens dropped from the left to fit the context


@dataclass
class Completion:
    """One generated continuation."""

    text: str
    token_ids: list[int]
    finish_reason: str  # "length" | "eos" | "stop_id" (a stop id, e.g. the end of a chat answer) | "stop"
    logprobs: list[float] = field(default_factory=list)  # per token id, see `SampleIds`


@dataclass
class GenerationResult:
    prompt_ids: list[int]
    completions: list[Completion]
    cropped_tokens: int  # prompt tokens dropped from the left to fit the context


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set logits (B, V) outside the top-k and top-p sets to -inf."""
    if top_k > 0 and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p (the first always stays).
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token_probabilities(logits: torch.Tensor, temperature: float, top_k: int = 0,
                             top_p: float = 1.0) -> torch.Tensor:
    """The distribution (B, V) the next token is drawn from; temperature 0 puts all mass on the argmax."""
    logits = logits.float()
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.size(-1)).float()
    return filter_logits(logits / temperature, top_k, top_p).softmax(dim=-1)


def sample_next(logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Choose the next token id (B,) from logits (B, V)."""
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    probs = next_token_probabilities(logits, sampling.temperature, sampling.top_k, sampling.top_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@contextmanager
def _inference(model: torch.nn.Module, inference_mode: bool = False) -> Iterator[None]:
    """Eval mode and no gradients for the duration; every module's own mode restored after.

    Each module's flag is saved, not just the model's: a caller may keep part of a model in eval
    mode (a frozen piece) while the rest trains, and `model.train()` would flip it.
    `inference_mode` is for code that hands no tensor back (tensors made under it can never enter
    autograd); it skips autograd's bookkeeping on every op: a GPT-2-size int8 decode step took
    9.8 ms instead of 10.2.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.inference_mode() if inference_mode else torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


class TextStream:
    """Incremental detokenizer for one sample: whole characters only, stop strings held back."""

    def __init__(self, tokenizer: Tokenizer, stop: tuple[str, ...]) -> None:
        self.tokenizer = tokenizer
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stop = stop
        self.holdback = max((len(s) - 1 for s in stop), default=0)
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add a token; return the newly safe-to-show text."""
        self.text += self.decoder.decode(self.tokenizer.token_bytes(token_id))
        for s in self.stop:
            cut = self.text.find(s, max(0, self.emitted - len(s)))
            if cut >= 0:
                self.text, self.stopped = self.text[:cut], True
        safe = len(self.text) if self.stopped else max(self.emitted, len(self.text) - self.holdback)
        piece, self.emitted = self.text[self.emitted:safe], safe
        return piece

    def finish(self) -> str:
        if not self.stopped:
            self.text += self.decoder.decode(b"", final=True)
        piece, self.emitted = self.text[self.emitted:], len(self.text)
        return piece


class Engine:
    """Prefill + KV-cached decode over a trained `GPT`, with the usual sampling controls."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, device: torch.device | str | None = None) -> None:
        # The model is not switched to eval here: each call does that and restores the caller's mode.
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.context = model.config.context_length
        # Past the context, a rotary model's cache rolls; learned positions slide the window.
        self.rolling = KVCache.can_roll(model.config)

    def crop_prompt(self, ids: list[int]) -> tuple[list[int], int]:
        """`ids` cropped from the left to leave room for at least one new token; and how many went."""
        cropped = max(0, len(ids) - max(1, self.context - 1))
        return ids[cropped:], cropped

    def encode_prompt(self, prompt: str) -> tuple[list[int], int]:
        """bos + prompt tokens, cropped from the left to leave room for at least one new token."""
        return self.crop_prompt([self.tokenizer.bos_id, *self.tokenizer.encode(prompt)])

    def next_token_logits(self, ids: list[int]) -> torch.Tensor:
        """Logits (V,) for the token after `ids` (no cache: for inspection and tests)."""
        with _inference(self.model):
            x = torch.tensor([ids[-self.context:]], device=self.device)
            return self.model(x).logits[0, -1].float()

    def generate_ids(self, prompt_ids: Sequence[int], sampling: SamplingConfig,
                     stop_ids: Iterable[int] | None = None,
                     on_token: Callable[[int, int], bool | None] | None = None,
                     top_logprobs: int = 0,
                     on_step: Callable[[int, SampleIds], bool | None] | None = None) -> IdsResult:
        """Continue `prompt_ids` with `sampling.num_samples` samples drawn as one batch.

        The ids are read as given (add bos yourself); a prompt longer than the context loses
        tokens from the left (`cropped_tokens`). A sample ends at `max_new_tokens`, at any id in
        `stop_ids` (plus the tokenizer's eos when `sampling.stop_at_eos`; the stop id is not
        added to the sample's ids, see `SampleIds.stop_id`), or when `on_token(sample_index,
        token_id)`, called for each id added to a sample, returns True (reason "stop"; that id
        stays). `on_step(sample_index, sample)` is the same hook with the sample so far (its last
        entries are the new id, its log-probability and, with `top_logprobs=k`, the k most likely
        ids of that step): what a server streaming log-probabilities needs. `sampling.stop`
        (text) is for the text layer and is not looked at here.
        """
        ids, cropped = self.crop_prompt(list(prompt_ids))
        vocab_size = self.model.config.vocab_size
        if not ids:
            raise GlassError("the prompt needs at least one token id (usually bos)")
        if bad := [i for i in ids if not 0 <= i < vocab_size]:
            raise GlassError(f"prompt token ids must be in 0..{vocab_size - 1}, got {bad[:5]}")
        if top_logprobs < 0:
            raise GlassError(f"top log-probabilities must be >= 0, got {top_logprobs}")
        stops = set(stop_ids or ())
        if sampling.stop_at_eos:
            stops.add(self.tokenizer.eos_id)
        n = sampling.num_samples
        generator = None
        if sampling.temperature > 0:
            generator = torch.Generator(device=self.device)
            if sampling.seed is not None:
                generator.manual_seed(sampling.seed)
            else:
                generator.seed()  # fresh entropy for this generator only; torch's global RNG is left alone
        samples = [SampleIds([], [], "length") for _ in range(n)]
        finished = [False] * n

        with _inference(self.model, inference_mode=True):  # only ids and floats leave this block
            dtype = next(self.model.parameters()).dtype
            # Prefill once at batch 1, then copy the cache for each sample. The cache holds what this
            # generation can reach (at most the context), not always the whole context.
            cache_length = min(self.context, len(ids) + sampling.max_new_tokens)
            cache = KVCache(self.model.config, 1, cache_length, self.device, dtype, rolling=self.rolling)
            logits = self.model(torch.tensor([ids], device=self.device), kv_cache=cache, logits_to_keep=1).logits[:, -1]
            if n > 1:
                cache.repeat_batch(n)
                logits = logits.expand(n, -1)
            history = torch.tensor([ids], device=self.device).expand(n, -1)

            for step in range(sampling.max_new_tokens):
                next_ids = sample_next(logits, sampling, generator)  # (n,)
                # The model's own log-probability: raw logits, temperature 1 (see `SampleIds`).
                all_logprobs = torch.log_softmax(logits.float(), dim=-1)
                logprobs = all_logprobs.gather(1, next_ids[:, None])[:, 0]
                if top_logprobs:
                    best = all_logprobs.topk(min(top_logprobs, vocab_size), dim=-1)
                    tops = [list(zip(row_ids, row_values, strict=True)) for row_ids, row_values
                            in zip(best.indices.tolist(), best.values.tolist(), strict=True)]
                history = torch.cat([history, next_ids[:, None]], dim=1)
                for i, (token, logprob) in enumerate(zip(next_ids.tolist(), logprobs.tolist(), strict=True)):
                    if finished[i]:
                        continue  # finished rows still ride along in the batch; their draws are dropped
                    sample = samples[i]
                    if token in stops:
                        finished[i] = True
                        sample.finish_reason = "eos" if token == self.tokenizer.eos_id else "stop_id"
                        sample.stop_id, sample.stop_logprob = token, logprob
                        continue
                    sample.token_ids.append(token)
                    sample.logprobs.append(logprob)
                    if top_logprobs:
                        sample.top_logprobs.append(tops[i])
                    stop = on_token is not None and on_token(i, token)
                    stop = (on_step is not None and on_step(i, sample)) or stop
                    if stop:
                        finished[i], sample.finish_reason = True, "stop"
                if all(finished) or step == sampling.max_new_tokens - 1:
                    break  # no forward pass for a token that will never be used
                if cache.position >= cache.max_length and not cache.rolling:
                    # Learned positions, window full: keep the last three quarters and read them in
                    # again (positions restart at 0, so this is exactly a fresh prompt of those tokens).
                    keep = history[:, -max(1, 3 * self.context // 4):]
                    cache = KVCache(self.model.config, n, self.context, self.device, dtype)
                    logits = self.model(keep, kv_cache=cache, logits_to_keep=1).logits[:, -1]
                else:
                    logits = self.model(next_ids[:, None], kv_cache=cache).logits[:, -1]
        return IdsResult(ids, samples, cropped)

    def generate(self, prompt: str, sampling: SamplingConfig,
                 on_text: Callable[[int, str], None] | None = None) -> GenerationResult:
        """Continue `prompt`; `on_text(sample_index, text)` receives text as it is produced.

        Text on top of `generate_ids`: bos + the prompt's tokens go in, and each new token is
        decoded as it arrives; a sample stops once its text holds one of `sampling.stop`.
        """
        prompt_ids, cropped = self.encode_prompt(prompt)
        result = self.complete_ids(prompt_ids, sampling, on_text=on_text)
        return GenerationResult(result.prompt_ids, result.completions, cropped + result.cropped_tokens)

    def complete_ids(self, prompt_ids: Sequence[int], sampling: SamplingConfig, stop_ids: Iterable[int] | None = None,
                     on_text: Callable[[int, str], None] | None = None) -> GenerationResult:
        """`generate` for a prompt given as ids (e.g. a chat prompt ending with
        `<|assistant_start|>`, stopped by `stop_ids`): the new tokens as streamed text."""
        streams = [TextStream(self.tokenizer, sampling.stop) for _ in range(sampling.num_samples)]

        def on_token(i: int, token: int) -> bool:
            piece = streams[i].push(token)
            if piece and on_text:
                on_text(i, piece)
            return streams[i].stopped

        result = self.generate_ids(prompt_ids, sampling, stop_ids, on_token=on_token)
        completions = []
        for i, sample in enumerate(result.samples):
            piece = streams[i].finish()
            if piece and on_text:
                on_text(i, piece)
            completions.append(Completion(streams[i].text, sample.token_ids, sample.finish_reason,
                                          sample.logprobs))
        return GenerationResult(result.prompt_ids, completions, result.cropped_tokens)
