"""Counting models of text: letter statistics and character and word n-gram models.

Owns the vectorised counting (every n-gram packed into one uint64 and counted by sorting), the
smoothing (interpolated Kneser-Ney), generation at a temperature, and held-out bits per byte.
No argv or environment reading: the `ngram` command drives this module.

Character models work on the UTF-8 *bytes* of the text, so bits per byte is exact: the model
gives a probability to every one of the 256 possible next bytes.

Word models work on GPT-2-style word tokens (an optional leading space, then letters, digits or
punctuation; whitespace runs are tokens too), so the tokens concatenate back to the exact text.
Their bits per byte is computed honestly over the same bytes: tokens seen fewer than twice in
training are replaced by <unk>, and an <unk> in the validation text costs -log2 P(<unk> | context)
plus the bits to spell the token byte by byte with a byte-unigram spelling model.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from glassgpt.errors import GlassError

CHAR_MAX_N = 8  # 8 bytes of context + next byte still fit in one uint64 code
WORD_MAX_N = 4  # 4 word ids of 16 bits each fit in one uint64 code
WORD_VOCAB_LIMIT = 65_535  # ids must fit in 16 bits; id 0 is <unk>
UNK = "<unk>"
SMOOTHING = (
    "interpolated Kneser-Ney (discount D = n1/(n1+2*n2) per order, lower orders\n"
    "  use continuation counts, an unseen context backs off, the bottom is uniform)"
)

# GPT-2's pre-tokeniser (ASCII version): the space belongs to the word after it.
_WORD_RE = re.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"""
)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise GlassError(message)


def check_temperature(temperature: float) -> None:
    """Temperature must be a finite number >= 0 (0 means: always the most likely symbol)."""
    _require(
        math.isfinite(temperature) and temperature >= 0,
        f"temperature must be a number >= 0, got {temperature}",
    )


# ---------------------------------------------------------------------------------------------
# Letters and letter pairs
# ---------------------------------------------------------------------------------------------

LETTERS = "abcdefghijklmnopqrstuvwxyz"
PAIR_SYMBOLS = LETTERS + " "  # index 26 is "space": any run of non-letters


@dataclass(frozen=True)
class LetterStats:
    """How often each letter a..z occurs (case folded; other characters ignored)."""

    letters: str
    counts: np.ndarray  # int64, one per letter

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @property
    def probabilities(self) -> np.ndarray:
        return self.counts / max(self.total, 1)


@dataclass(frozen=True)
class PairStats:
    """Letter pairs over a..z plus space (any run of non-letters becomes one space)."""

    symbols: str
    counts: np.ndarray  # 27x27 int64: counts[first, second]

    @property
    def conditional(self) -> np.ndarray:
        """P(second | first); a row that never occurs is all zeros."""
        rows = self.counts.sum(axis=1, keepdims=True)
        return np.divide(self.counts, rows, out=np.zeros(self.counts.shape), where=rows > 0)


def _letter_indices(texts: Sequence[str]) -> np.ndarray:
    """Each byte mapped to 0..25 (a..z, case folded) or 26 (anything else)."""
    table = np.full(256, 26, dtype=np.int64)
    for i, ch in enumerate(LETTERS):
        table[ord(ch)] = i
        table[ord(ch.upper())] = i
    data = np.frombuffer("".join(texts).encode("utf-8"), dtype=np.uint8)
    return table[data]


def letter_frequencies(texts: Sequence[str]) -> LetterStats:
    """Counts of the letters a..z in `texts`, case folded."""
    idx = _letter_indices(texts)
    counts = np.bincount(idx, minlength=27)[:26]
    _require(counts.sum() > 0, "the corpus has no letters a-z: give some English text")
    return LetterStats(LETTERS, counts)


def letter_pairs(texts: Sequence[str]) -> PairStats:
    """Counts of adjacent symbol pairs over a..z and space (runs of non-letters = one space)."""
    idx = _letter_indices(texts)
    # collapse runs of "space" so that ", " or ".\n\n" all read as one word break
    keep = np.ones(len(idx), dtype=bool)
    keep[1:] = ~((idx[1:] == 26) & (idx[:-1] == 26))
    idx = idx[keep]
    _require(len(idx) >= 2, "the corpus is too short to count letter pairs")
    counts = np.bincount(idx[:-1] * 27 + idx[1:], minlength=27 * 27).reshape(27, 27)
    return PairStats(PAIR_SYMBOLS, counts)


# ---------------------------------------------------------------------------------------------
# Vectorised n-gram counting
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderTable:
    """All k-grams of one order k, counted, with the per-context sums Kneser-Ney needs.

    A k-gram is packed into a uint64 with its first symbol in the highest bits, so sorting the
    codes groups every context's continuations together (a contiguous run per context).
    """

    order: int
    codes: np.ndarray  # sorted unique k-gram codes (uint64)
    counts: np.ndarray  # how often each k-gram occurs (int64)
    cont: np.ndarray  # continuation counts: distinct symbols seen just before the k-gram
    ctx_codes: np.ndarray  # sorted unique contexts (the first k-1 symbols of each k-gram)
    ctx_starts: np.ndarray  # codes[ctx_starts[i]:ctx_starts[i+1]] are context i's k-grams
    raw_total: np.ndarray  # per context: sum of counts
    cont_total: np.ndarray  # per context: sum of continuation counts
    raw_types: np.ndarray  # per context: distinct next symbols
    cont_types: np.ndarray  # per context: distinct next symbols with a continuation count
    raw_discount: float
    cont_discount: float


def _discount(counts: np.ndarray) -> float:
    """Ney's absolute discount D = n1 / (n1 + 2 n2) from the counts-of-counts, kept in (0, 1)."""
    n1 = int(np.count_nonzero(counts == 1))
    n2 = int(np.count_nonzero(counts == 2))
    if n1 + 2 * n2 == 0:
        return 0.5
    return float(min(max(n1 / (n1 + 2 * n2), 0.05), 0.95))


def _runs(sorted_codes: np.ndarray) -> np.ndarray:
    """Start index of every run of equal values in a sorted array."""
    if len(sorted_codes) == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.empty(len(sorted_codes), dtype=bool)
    change[0] = True
    np.not_equal(sorted_codes[1:], sorted_codes[:-1], out=change[1:])
    return np.flatnonzero(change)


def _find(table: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each query in the sorted `table` (clipped to a valid index) and whether it is there.

    The queries are searched in sorted order: a binary search that walks the table in order
    stays in the CPU cache and is several times faster on tables of millions of codes.
    """
    order = np.argsort(queries, kind="stable")
    idx = np.empty(len(queries), dtype=np.int64)
    idx[order] = np.searchsorted(table, queries[order])
    np.minimum(idx, len(table) - 1, out=idx)
    return idx, table[idx] == queries


def _pack(symbols: np.ndarray, bits: int) -> np.ndarray:
    """Code of the window symbols[..., 0..k-1] (first symbol in the highest bits)."""
    code = np.zeros(symbols.shape[:-1], dtype=np.uint64)
    for j in range(symbols.shape[-1]):
        code = (code << np.uint64(bits)) | symbols[..., j].astype(np.uint64)
    return code


class NGramCounts:
    """Counts of every k-gram, k = 1..max_order, of one symbol stream (bytes or word ids)."""

    def __init__(self, stream: np.ndarray, max_order: int, bits: int, alphabet: int) -> None:
        _require(len(stream) > 0, "the corpus is empty: there is nothing to count")
        _require(
            len(stream) >= max_order,
            f"the corpus is too short for n = {max_order}: it has only {len(stream)} symbols",
        )
        _require(max_order * bits <= 64, f"order {max_order} does not fit in 64-bit codes")
        self.bits = bits
        self.alphabet = alphabet
        self.max_order = max_order
        self.length = len(stream)
        sorted_codes = self._sorted_window_codes(stream, max_order, bits)
        uniques: list[tuple[np.ndarray, np.ndarray]] = []
        for k in range(1, max_order + 1):
            uniques.append(self._count_order(sorted_codes, stream, k, max_order, bits))
        del sorted_codes
        self.tables: list[OrderTable] = []
        for k in range(1, max_order + 1):
            codes, counts = uniques[k - 1]
            cont = self._continuation(codes, uniques[k][0], k, bits) if k < max_order else None
            self.tables.append(self._table(k, codes, counts, cont, bits))

    @staticmethod
    def _sorted_window_codes(stream: np.ndarray, width: int, bits: int) -> np.ndarray:
        # One code per position for the window of `width` symbols starting there (zero-padded
        # past the end). One sort of these serves every order: a sorted list stays sorted when
        # every code is cut to its first k symbols (a right shift).
        n = len(stream)
        if bits == 8:
            # bytes: read 8 bytes at every offset as one big-endian number (a strided view)
            raw = np.concatenate([stream.astype(np.uint8), np.zeros(8, dtype=np.uint8)])
            view = np.ndarray((n,), dtype=">u8", buffer=raw, strides=(1,))
            codes = view.astype(np.uint64) >> np.uint64(8 * (8 - width))
            codes.sort()
            return codes
        padded = np.concatenate([stream.astype(np.uint64), np.zeros(width - 1, dtype=np.uint64)])
        codes = np.zeros(n, dtype=np.uint64)
        for j in range(width):
            codes |= padded[j : j + n] << np.uint64(bits * (width - 1 - j))
        codes.sort()
        return codes

    @staticmethod
    def _count_order(
        sorted_codes: np.ndarray, stream: np.ndarray, k: int, width: int, bits: int
    ) -> tuple[np.ndarray, np.ndarray]:
        shifted = sorted_codes >> np.uint64(bits * (width - k))
        starts = _runs(shifted)
        codes = shifted[starts]
        counts = np.diff(np.append(starts, len(shifted))).astype(np.int64)
        # The last k-1 positions have no full k-gram: their zero-padded codes are not real.
        n = len(stream)
        for p in range(max(n - k + 1, 0), n):
            tail = np.zeros(k, dtype=np.uint64)
            tail[: n - p] = stream[p:]
            i = int(np.searchsorted(codes, _pack(tail[None, :], bits)[0]))
            counts[i] -= 1
        keep = counts > 0
        return codes[keep], counts[keep]

    @staticmethod
    def _continuation(codes: np.ndarray, longer: np.ndarray, k: int, bits: int) -> np.ndarray:
        """For each k-gram: how many distinct symbols precede it.

        That is the number of distinct (k+1)-grams ending in it.
        """
        suffixes = np.sort(longer & np.uint64((1 << (bits * k)) - 1))
        starts = _runs(suffixes)
        values = suffixes[starts]
        n_left = np.diff(np.append(starts, len(suffixes)))
        cont = np.zeros(len(codes), dtype=np.int64)
        cont[np.searchsorted(codes, values)] = n_left
        return cont

    @staticmethod
    def _table(
        k: int, codes: np.ndarray, counts: np.ndarray, cont: np.ndarray | None, bits: int
    ) -> OrderTable:
        if cont is None:  # the top order of these counts is only ever used with raw counts
            cont = np.zeros(len(codes), dtype=np.int64)
        contexts = codes >> np.uint64(bits)
        starts = _runs(contexts)
        return OrderTable(
            order=k,
            codes=codes,
            counts=counts,
            cont=cont,
            ctx_codes=contexts[starts],
            ctx_starts=np.append(starts, len(codes)),
            raw_total=np.add.reduceat(counts, starts),
            cont_total=np.add.reduceat(cont, starts),
            raw_types=np.diff(np.append(starts, len(codes))),
            cont_types=np.add.reduceat((cont > 0).astype(np.int64), starts),
            raw_discount=_discount(counts),
            cont_discount=_discount(cont[cont > 0]),
        )

    def lookup(self, seq: np.ndarray, max_order: int | None = None) -> list[Lookup]:
        """Where every position's context and k-gram sit in the tables, for k = 1..max_order.

        The searches are the slow part of scoring text; models of every order share them.
        """
        max_order = self.max_order if max_order is None else max_order
        seq = np.asarray(seq).astype(np.uint64)
        positions = np.arange(len(seq))
        ctx = np.zeros(len(seq), dtype=np.uint64)  # the k-1 symbols before each position
        out = []
        for k in range(1, max_order + 1):
            if k > 1:  # one more symbol of context, on the left (into the top bits)
                ctx[k - 1 :] |= seq[: len(seq) - (k - 1)] << np.uint64(self.bits * (k - 2))
            table = self.tables[k - 1]
            window = (ctx << np.uint64(self.bits)) | seq
            ci, ctx_found = _find(table.ctx_codes, ctx)
            gi, gram_found = _find(table.codes, window)
            out.append(
                Lookup(
                    context_found=(positions >= k - 1) & ctx_found,
                    ci=ci,
                    gi=gi,
                    gram_found=gram_found,
                )
            )
        return out

    def model(self, n: int) -> NGramModel:
        """The order-n model (n-1 symbols of context) built on these counts."""
        _require(1 <= n <= self.max_order, f"n must be 1..{self.max_order}, got {n}")
        return NGramModel(self, n)


# ---------------------------------------------------------------------------------------------
# The smoothed model: interpolated Kneser-Ney
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """Where each position of a text sits in one order's table (see `NGramCounts.lookup`)."""

    context_found: np.ndarray  # bool: the position has k-1 symbols before it, seen in training
    ci: np.ndarray  # index of the context in ctx_codes (meaningful where context_found)
    gi: np.ndarray  # index of the k-gram in codes (meaningful where gram_found)
    gram_found: np.ndarray  # bool: the k-gram was seen in training


class NGramModel:
    """P(next | previous n-1 symbols), interpolated Kneser-Ney.

    p_k(w | h) = max(c(h w) - D, 0) / c(h) + D * types(h) / c(h) * p_{k-1}(w | h minus its first)

    The top order uses raw counts, lower orders use continuation counts (in how many different
    contexts a symbol string was seen), and the bottom is uniform over the alphabet; an unseen
    context passes the lower order through unchanged. Every distribution sums to 1.
    """

    def __init__(self, counts: NGramCounts, n: int) -> None:
        self.counts = counts
        self.n = n

    @property
    def contexts(self) -> int:
        """Distinct contexts of n-1 symbols seen in training (1 for n = 1: the empty context)."""
        return len(self.counts.tables[self.n - 1].ctx_codes)

    @property
    def ngrams(self) -> int:
        """Distinct n-grams seen in training: the entries of the count table."""
        return len(self.counts.tables[self.n - 1].codes)

    def _level(self, k: int) -> tuple[OrderTable, np.ndarray, np.ndarray, np.ndarray, float]:
        table = self.counts.tables[k - 1]
        if k == self.n:
            return table, table.counts, table.raw_total, table.raw_types, table.raw_discount
        return table, table.cont, table.cont_total, table.cont_types, table.cont_discount

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """The probability of every symbol after `context` (only its last n-1 symbols count)."""
        alphabet = self.counts.alphabet
        probs = np.full(alphabet, 1.0 / alphabet)
        context = list(context)[-(self.n - 1) :] if self.n > 1 else []
        bits = self.counts.bits
        for k in range(1, self.n + 1):
            if len(context) < k - 1:
                break
            table, values, totals, types, discount = self._level(k)
            ctx = _pack(np.asarray(context[len(context) - (k - 1) :])[None, :], bits)[0]
            i = int(np.searchsorted(table.ctx_codes, ctx))
            if i >= len(table.ctx_codes) or table.ctx_codes[i] != ctx or totals[i] == 0:
                continue  # unseen context: keep the lower order
            lo, hi = table.ctx_starts[i], table.ctx_starts[i + 1]
            symbols = (table.codes[lo:hi] & np.uint64((1 << bits) - 1)).astype(np.int64)
            total = float(totals[i])
            probs = probs * (discount * types[i] / total)
            probs[symbols] += np.maximum(values[lo:hi] - discount, 0.0) / total
        return probs

    def log2_probs(self, seq: np.ndarray, lookups: list[Lookup] | None = None) -> np.ndarray:
        """log2 P(seq[i] | up to n-1 symbols before it) for every position i (vectorised).

        The first positions have fewer symbols before them and use the lower orders.
        `lookups` (from `NGramCounts.lookup`) can be shared by all models of the same counts.
        """
        if lookups is None:
            lookups = self.counts.lookup(seq, self.n)
        probs = np.full(len(seq), 1.0 / self.counts.alphabet)
        for k in range(1, self.n + 1):
            look = lookups[k - 1]
            _, values, totals, types, discount = self._level(k)
            seen = look.context_found & (totals[look.ci] > 0)
            c = np.where(look.gram_found, values[look.gi], 0)
            total = np.where(seen, totals[look.ci], 1).astype(np.float64)
            mixed = (
                np.maximum(c - discount, 0.0) / total + discount * types[look.ci] / total * probs
            )
            probs = np.where(seen, mixed, probs)
        return np.log2(probs)

    def generate(
        self,
        prompt: Sequence[int],
        count: int,
        rng: np.random.Generator,
        temperature: float = 1.0,
        banned: Sequence[int] = (),
    ) -> list[int]:
        """`count` new symbols after `prompt`, each drawn from p^(1/T) renormalised.

        T = 0 always takes the most likely symbol.
        """
        check_temperature(temperature)
        history = list(prompt)
        out: list[int] = []
        for _ in range(count):
            probs = self.distribution(history)
            if banned:
                probs[list(banned)] = 0.0
            symbol = sample(probs, rng, temperature)
            history.append(symbol)
            out.append(symbol)
        return out


def sample(probs: np.ndarray, rng: np.random.Generator, temperature: float) -> int:
    """Draw an index from p^(1/T), renormalised; T = 0 picks the most likely index."""
    if temperature == 0:
        return int(np.argmax(probs))
    # work in log space so that tiny probabilities at low temperature do not underflow to 0/0
    with np.errstate(divide="ignore"):
        logits = np.log(probs) / temperature
    logits -= logits.max()
    weights = np.exp(logits)
    weights /= weights.sum()
    return int(rng.choice(len(weights), p=weights))


# ---------------------------------------------------------------------------------------------
# Character (byte) models
# ---------------------------------------------------------------------------------------------


def _bytes_of(texts: Sequence[str]) -> np.ndarray:
    return np.frombuffer("".join(texts).encode("utf-8"), dtype=np.uint8)


class CharNGrams:
    """Byte-level n-gram models of order 1..max_n over the concatenated training texts."""

    def __init__(self, train_texts: Sequence[str], max_n: int) -> None:
        _require(1 <= max_n <= CHAR_MAX_N, f"character n must be 1..{CHAR_MAX_N}, got {max_n}")
        stream = _bytes_of(train_texts)
        _require(len(stream) > 0, "the corpus is empty: give some text to count")
        self.counts = NGramCounts(stream, max_n, bits=8, alphabet=256)
        self.max_n = max_n

    def model(self, n: int) -> NGramModel:
        _require(1 <= n <= self.max_n, f"character n must be 1..{self.max_n}, got {n}")
        return self.counts.model(n)

    def bits_per_byte(
        self, texts: Sequence[str], orders: Sequence[int] | None = None
    ) -> list[float]:
        """Held-out bits per byte for each order: mean -log2 P(byte | previous bytes) on `texts`.

        Each text is scored on its own (no context runs across two documents).
        """
        orders = list(range(1, self.max_n + 1)) if orders is None else list(orders)
        models = [self.model(n) for n in orders]
        total_bits = np.zeros(len(orders))
        total_bytes = 0
        for text in texts:
            data = _bytes_of([text])
            if len(data) == 0:
                continue
            lookups = self.counts.lookup(data, max(orders))
            for i, model in enumerate(models):
                total_bits[i] -= float(model.log2_probs(data, lookups).sum())
            total_bytes += len(data)
        _require(total_bytes > 0, "the validation text is empty")
        return [float(b / total_bytes) for b in total_bits]

    def generate(
        self, n: int, prompt: str, length: int, seed: int, temperature: float = 1.0
    ) -> str:
        """`length` bytes generated after `prompt`, decoded as UTF-8 (bad bytes become U+FFFD)."""
        _require(length >= 1, f"length must be at least 1, got {length}")
        rng = np.random.default_rng(seed)
        start = list(prompt.encode("utf-8"))
        out = self.model(n).generate(start, length, rng, temperature)
        return prompt + bytes(out).decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------
# Word models
# ---------------------------------------------------------------------------------------------


def word_tokens(text: str) -> list[str]:
    """GPT-2-style word tokens; they concatenate back to exactly `text`."""
    return _WORD_RE.findall(text)


@dataclass(frozen=True)
class SpellingModel:
    """P(token spelled byte by byte): a byte unigram with an end mark, add-one smoothed.

    Gives every byte string a probability, so an <unk> token in held-out text costs finite bits.
    """

    log2_byte: np.ndarray  # 257 entries: bytes 0..255 then "end of token"

    @staticmethod
    def fit(spellings: Sequence[str]) -> SpellingModel:
        counts = np.ones(257, dtype=np.float64)
        data = np.frombuffer("".join(spellings).encode("utf-8"), dtype=np.uint8)
        counts[:256] += np.bincount(data, minlength=256)
        counts[256] += len(spellings)
        return SpellingModel(np.log2(counts / counts.sum()))

    def bits(self, token: str) -> float:
        data = np.frombuffer(token.encode("utf-8"), dtype=np.uint8)
        return float(-self.log2_byte[data].sum() - self.log2_byte[256])


class WordNGrams:
    """Word n-gram models of order 1..max_n with an <unk> token and a spelling model for it."""

    def __init__(self, train_texts: Sequence[str], max_n: int) -> None:
        _require(1 <= max_n <= WORD_MAX_N, f"word n must be 1..{WORD_MAX_N}, got {max_n}")
        tokens = [tok for text in train_texts for tok in word_tokens(text)]
        _require(len(tokens) > 0, "the corpus is empty: give some text to count")
        freq = Counter(tokens)
        # tokens seen once are <unk> in training too, so the model learns where <unk> goes
        kept = [tok for tok, c in freq.most_common(WORD_VOCAB_LIMIT - 1) if c >= 2]
        self.vocab: list[str] = [UNK, *kept]
        self.index = {tok: i for i, tok in enumerate(self.vocab)}
        ids = np.fromiter((self.index.get(t, 0) for t in tokens), dtype=np.int64, count=len(tokens))
        self.spelling = SpellingModel.fit([t for t in tokens if t not in self.index])
        self.counts = NGramCounts(ids, max_n, bits=16, alphabet=len(self.vocab))
        self.max_n = max_n

    def model(self, n: int) -> NGramModel:
        _require(1 <= n <= self.max_n, f"word n must be 1..{self.max_n}, got {n}")
        return self.counts.model(n)

    def bits_per_byte(
        self, texts: Sequence[str], orders: Sequence[int] | None = None
    ) -> list[WordScore]:
        """Held-out bits per byte for each order, with every <unk> token spelled out.

        bits = sum of -log2 P(token | previous tokens) + spelling bits of each <unk> token;
        bytes = the UTF-8 bytes of `texts`. Each text is scored on its own.
        """
        orders = list(range(1, self.max_n + 1)) if orders is None else list(orders)
        models = [self.model(n) for n in orders]
        total_bits = np.zeros(len(orders))
        total_bytes, n_tokens, n_unk = 0, 0, 0
        for text in texts:
            tokens = word_tokens(text)
            if not tokens:
                continue
            ids = np.array([self.index.get(t, 0) for t in tokens], dtype=np.int64)
            lookups = self.counts.lookup(ids, max(orders))
            spelling = sum(self.spelling.bits(t) for t in tokens if t not in self.index)
            for i, model in enumerate(models):
                total_bits[i] += spelling - float(model.log2_probs(ids, lookups).sum())
            total_bytes += len(text.encode("utf-8"))
            n_tokens += len(tokens)
            n_unk += int(np.count_nonzero(ids == 0))
        _require(total_bytes > 0, "the validation text is empty")
        return [WordScore(float(b / total_bytes), n_unk / n_tokens, n_tokens) for b in total_bits]

    def generate(
        self, n: int, prompt: str, length: int, seed: int, temperature: float = 1.0
    ) -> str:
        """Tokens generated after `prompt` until the text has `length` more characters.

        <unk> is never drawn (it is not a word one could print).
        """
        _require(length >= 1, f"length must be at least 1, got {length}")
        check_temperature(temperature)
        rng = np.random.default_rng(seed)
        model = self.model(n)
        history = [self.index.get(t, 0) for t in word_tokens(prompt)]
        text = prompt
        while len(text) < len(prompt) + length:
            probs = model.distribution(history)
            probs[0] = 0.0
            if probs.sum() == 0:  # no word was seen twice: the vocabulary is only <unk>
                break
            symbol = sample(probs, rng, temperature)
            history.append(symbol)
            text += self.vocab[symbol]
        return text


@dataclass(frozen=True)
class WordScore:
    """Held-out score of a word model."""

    bits_per_byte: float
    unk_rate: float  # fraction of validation tokens that were <unk>
    tokens: int


# ---------------------------------------------------------------------------------------------
# The whole comparison, as rows
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NGramRow:
    """One model of the comparison table."""

    kind: str  # "char" or "word"
    n: int
    contexts: int  # distinct contexts of n-1 symbols seen in training
    ngrams: int  # distinct n-grams seen in training
    bits_per_byte: float  # on the held-out (validation) text
    sample: str  # generated text


def _rows(
    kind: str,
    counts: CharNGrams | WordNGrams,
    bits_per_byte: Sequence[float],
    prompt: str,
    length: int,
    seed: int,
    temperature: float,
) -> list[NGramRow]:
    rows = []
    for n in range(1, counts.max_n + 1):
        model = counts.model(n)
        sample = counts.generate(n, prompt, length, seed, temperature)
        rows.append(NGramRow(kind, n, model.contexts, model.ngrams, bits_per_byte[n - 1], sample))
    return rows


def char_rows(
    counts: CharNGrams,
    val_texts: Sequence[str],
    prompt: str,
    length: int,
    seed: int,
    temperature: float,
) -> list[NGramRow]:
    """One row per character model n = 1..max_n; every sample uses the same seed."""
    bpb = counts.bits_per_byte(val_texts)
    return _rows("char", counts, bpb, prompt, length, seed, temperature)


def word_rows(
    counts: WordNGrams,
    val_texts: Sequence[str],
    prompt: str,
    length: int,
    seed: int,
    temperature: float,
) -> list[NGramRow]:
    """One row per word model n = 1..max_n; every sample uses the same seed."""
    bpb = [score.bits_per_byte for score in counts.bits_per_byte(val_texts)]
    return _rows("word", counts, bpb, prompt, length, seed, temperature)
