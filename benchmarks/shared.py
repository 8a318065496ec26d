"""What several benchmarks use, built once per run: the corpus, the tokenizers, training tokens."""

from __future__ import annotations

import time
from functools import cached_property

import numpy as np

from glassgpt.data.corpus import Document, builtin_documents
from glassgpt.tokenizer import Tokenizer


class Resources:
    """Lazily built inputs shared by the benchmarks.

    `bpe` is a byte-level BPE trained on the built-in corpus (`bpe_vocab` tokens; in quick
    mode on the first `bpe_train_chars` characters of each work only). `train_ids` are real
    corpus tokens from it, the data both training implementations see.
    """

    def __init__(self, bpe_vocab: int, bpe_train_chars: int | None, train_chars: int) -> None:
        self.bpe_vocab = bpe_vocab
        self.bpe_train_chars = bpe_train_chars
        self.train_chars = train_chars
        self.bpe_train_seconds = 0.0

    @cached_property
    def documents(self) -> list[Document]:
        return builtin_documents()

    @cached_property
    def bpe(self) -> Tokenizer:
        texts = [d.text[: self.bpe_train_chars] for d in self.documents]
        start = time.perf_counter()
        tokenizer = Tokenizer.train_bpe(texts, self.bpe_vocab)
        self.bpe_train_seconds = time.perf_counter() - start
        return tokenizer

    @cached_property
    def gpt2(self) -> Tokenizer:
        return Tokenizer.gpt2()

    @cached_property
    def train_ids(self) -> np.ndarray:
        texts = [d.text[: self.train_chars] for d in self.documents]
        ids = [i for doc in self.bpe.encode_many(texts) for i in doc]
        return np.asarray(ids, dtype=np.int64)

    def prompt_text(self) -> str:
        """English prose to start generation from (Moby Dick, past the front matter)."""
        text = next(d.text for d in self.documents if d.name == "mobydick")
        start = text.find("Call me Ishmael")
        return text[max(start, 0): max(start, 0) + 4000]
