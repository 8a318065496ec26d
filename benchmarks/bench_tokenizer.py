"""Tokenizer encoding speed: our tiktoken fast path vs Hugging Face `tokenizers`, same ids.

The text is a slice of each built-in work (`chars_per_work` characters; the whole corpus
if None). Four ways to encode it, all giving the same ids (checked against `encode_hf`):

* glassgpt `encode_many(texts)`: tiktoken, long texts split at safe places and encoded on
  all threads (the default: min(8, cores));
* glassgpt `encode_many(texts, num_threads=1)`: tiktoken on one thread;
* `encode_hf(text)` per text: `tokenizers`' `Tokenizer.encode`, what glassgpt falls back to;
* `tokenizers`' `encode_batch(texts)`: its own parallel batch (its best setting).

MB/s is UTF-8 megabytes (10^6 bytes) of text per second, the median of `repeats`
interleaved rounds.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks.common import Rate, fmt, fmt_ratio, interleaved, markdown_table, ratio, seconds
from glassgpt.tokenizer import Tokenizer

METHODS = ("glassgpt encode_many", "glassgpt 1 thread", "HF encode_hf", "HF encode_batch")


@dataclass(frozen=True)
class TokenizerPlan:
    chars_per_work: int | None
    repeats: int


@dataclass
class TokenizerResult:
    name: str
    vocab_size: int
    megabytes: float
    tokens: int
    rates: dict[str, Rate] = field(default_factory=dict)  # method -> MB/s
    identical: bool = False
    threads: int = 1

    @property
    def ratio_vs_encode_hf(self) -> float | None:
        return ratio(self.rates[METHODS[0]].median, self.rates["HF encode_hf"].median)

    @property
    def ratio_vs_hf_best(self) -> float | None:
        best = max(self.rates["HF encode_hf"].median, self.rates["HF encode_batch"].median)
        return ratio(self.rates[METHODS[0]].median, best)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "vocab_size": self.vocab_size, "megabytes": self.megabytes,
                "tokens": self.tokens, "identical": self.identical, "threads": self.threads,
                "mb_per_s": {m: r.to_dict() for m, r in self.rates.items()},
                "ratio_vs_encode_hf": self.ratio_vs_encode_hf, "ratio_vs_hf_best": self.ratio_vs_hf_best}


def hf_encode_batch(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """`tokenizers`' parallel batch encode, with special-token text treated as ordinary text."""
    hf = tokenizer.hf_tokenizer
    hf.encode_special_tokens = True  # what encode_hf does (specials are ordinary text)
    try:
        return [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    finally:
        hf.encode_special_tokens = False


def measure(name: str, tokenizer: Tokenizer, texts: list[str], repeats: int,
            log: Callable[[str], None]) -> TokenizerResult:
    log(f"  tokenizer {name}")
    num_bytes = sum(len(t.encode("utf-8")) for t in texts)
    encoders: dict[str, Callable[[], list[list[int]]]] = {
        METHODS[0]: lambda: tokenizer.encode_many(texts),
        METHODS[1]: lambda: tokenizer.encode_many(texts, num_threads=1),
        METHODS[2]: lambda: [tokenizer.encode_hf(t) for t in texts],
        METHODS[3]: lambda: hf_encode_batch(tokenizer, texts),
    }
    outputs = {m: fn() for m, fn in encoders.items()}  # also the warm-up
    reference = outputs["HF encode_hf"]
    result = TokenizerResult(name, tokenizer.vocab_size, num_bytes / 1e6, sum(len(ids) for ids in reference))
    result.identical = all(ids == reference for ids in outputs.values())
    result.threads = min(8, os.cpu_count() or 1)
    result.rates = interleaved({m: (lambda fn=fn: num_bytes / 1e6 / seconds(fn)) for m, fn in encoders.items()},
                               repeats)
    return result


def run(plan: TokenizerPlan, tokenizers: dict[str, Tokenizer], texts: list[str],
        log: Callable[[str], None]) -> list[TokenizerResult]:
    texts = [t[: plan.chars_per_work] for t in texts]
    return [measure(name, tok, texts, plan.repeats, log) for name, tok in tokenizers.items()]


def table(results: list[TokenizerResult]) -> str:
    rows = []
    for r in results:
        rows.append([
            r.name, f"{r.megabytes:.1f}", *(fmt(r.rates[m].median, 2) for m in METHODS),
            fmt_ratio(r.ratio_vs_encode_hf), fmt_ratio(r.ratio_vs_hf_best),
            "identical" if r.identical else "MISMATCH",
        ])
    threads = results[0].threads if results else 1
    return "### Tokenizer encode (MB/s)\n\n" + markdown_table(
        ["tokenizer", "MB", f"glassgpt encode_many ({threads} threads)", "glassgpt 1 thread", "HF encode_hf",
         "HF encode_batch", "ours/encode_hf", "ours/HF best", "ids"], rows)
