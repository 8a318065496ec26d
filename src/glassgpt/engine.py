"""Generation: the loop that turns next-token probabilities into text.

The model only scores; this engine decides. One step = logits for the last position ->
temperature -> top-k / top-p filtering -> pick a token (argmax at temperature 0, otherwise a
random draw) -> append -> repeat. The prompt is read once ("prefill") into a KV cache so that
each new token costs one position of work ("decode"). Several samples of one prompt share the
prefill and run as one batch. Text streams out as tokens arrive, never splitting a UTF-8
character or showing the start of a stop string that is then cut.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass

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
    stop: tuple[str, ...] = ()  # stop when the text produces any of these (not included)
    stop_at_eos: bool = True

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
class Completion:
    """One generated continuation."""

    text: str
    token_ids: list[int]
    finish_reason: str  # "length" | "eos" | "stop"


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


class _TextStream:
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
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.context = model.config.context_length

    def encode_prompt(self, prompt: str) -> tuple[list[int], int]:
        """bos + prompt tokens, cropped from the left to leave room for at least one new token."""
        ids = [self.tokenizer.bos_id, *self.tokenizer.encode(prompt)]
        limit = self.context - 1
        cropped = max(0, len(ids) - limit)
        return ids[cropped:], cropped

    @torch.no_grad()
    def next_token_logits(self, ids: list[int]) -> torch.Tensor:
        """Logits (V,) for the token after `ids` (no cache: for inspection and tests)."""
        x = torch.tensor([ids[-self.context:]], device=self.device)
        return self.model(x).logits[0, -1].float()

    @torch.no_grad()
    def generate(self, prompt: str, sampling: SamplingConfig,
                 on_text: Callable[[int, str], None] | None = None) -> GenerationResult:
        """Continue `prompt`; `on_text(sample_index, text)` receives text as it is produced."""
        prompt_ids, cropped = self.encode_prompt(prompt)
        n = sampling.num_samples
        generator = None
        if sampling.temperature > 0:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(sampling.seed if sampling.seed is not None else torch.seed())
        dtype = next(self.model.parameters()).dtype
        streams = [_TextStream(self.tokenizer, sampling.stop) for _ in range(n)]
        generated: list[list[int]] = [[] for _ in range(n)]
        reasons = ["length"] * n
        finished = [False] * n

        # Prefill once at batch 1, then copy the cache for each sample. The cache holds what this
        # generation can reach (at most the context), not always the whole context.
        cache_length = min(self.context, len(prompt_ids) + sampling.max_new_tokens)
        cache = KVCache(self.model.config, 1, cache_length, self.device, dtype)
        logits = self.model(torch.tensor([prompt_ids], device=self.device), kv_cache=cache).logits[:, -1]
        if n > 1:
            cache.repeat_batch(n)
            logits = logits.expand(n, -1)
        history = torch.tensor([prompt_ids], device=self.device).expand(n, -1)

        for step in range(sampling.max_new_tokens):
            next_ids = sample_next(logits, sampling, generator)  # (n,)
            history = torch.cat([history, next_ids[:, None]], dim=1)
            for i, token in enumerate(next_ids.tolist()):
                if finished[i]:
                    continue
                if sampling.stop_at_eos and token == self.tokenizer.eos_id:
                    finished[i], reasons[i] = True, "eos"
                    continue
                generated[i].append(token)
                piece = streams[i].push(token)
                if piece and on_text:
                    on_text(i, piece)
                if streams[i].stopped:
                    finished[i], reasons[i] = True, "stop"
            if all(finished) or step == sampling.max_new_tokens - 1:
                break  # no forward pass for a token that will never be used
            if cache.position >= cache.max_length:
                # The window is full: keep the last three quarters and read them in again.
                keep = history[:, -(3 * self.context // 4):]
                cache = KVCache(self.model.config, n, self.context, self.device, dtype)
                logits = self.model(keep, kv_cache=cache).logits[:, -1]
            else:
                logits = self.model(next_ids[:, None], kv_cache=cache).logits[:, -1]

        completions = []
        for i in range(n):
            piece = streams[i].finish()
            if piece and on_text:
                on_text(i, piece)
            completions.append(Completion(streams[i].text, generated[i], reasons[i]))
        return GenerationResult(prompt_ids, completions, cropped)
