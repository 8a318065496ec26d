"""Counting models: exact counts, proper distributions, held-out bits per byte, the command."""

from __future__ import annotations

import math
import shutil
import struct
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from glassgpt.cli import main
from glassgpt.data.corpus import builtin_documents, load_documents, split_documents
from glassgpt.errors import GlassError
from glassgpt.evaluate import bits_per_byte
from glassgpt.explain import ngram
from glassgpt.explain.ngram_draw import GPT_COLOURS
from glassgpt.runs import RunFolder
from pixels import (  # the pixel helpers of the picture tests
    assert_markers,
    autoscaled,
    axes_box,
    bars,
    cell_centres,
    cmap_value,
    colour_mask,
    frames,
    read_rgb,
)


@pytest.fixture(scope="module")
def austen() -> str:
    return builtin_documents()[0].text


@pytest.fixture(scope="module")
def small_split(austen: str) -> tuple[list[str], list[str]]:
    """200 kB of Austen for training, the next 20 kB for validation."""
    return [austen[:200_000]], [austen[200_000:220_000]]


def test_counts_are_exact_counts_of_every_kgram():
    text = "abracadabra, abra cadabra! " * 7 + "zz"
    data = text.encode()
    counts = ngram.NGramCounts(np.frombuffer(data, np.uint8), max_order=4, bits=8, alphabet=256)
    for k in range(1, 5):
        expected = Counter(data[i : i + k] for i in range(len(data) - k + 1))
        table = counts.tables[k - 1]
        got = {
            int(code).to_bytes(k, "big"): int(c)
            for code, c in zip(table.codes, table.counts, strict=True)
        }
        assert got == dict(expected)
        if k < 4:  # continuation count: distinct bytes seen just before the k-gram
            left = Counter(data[i + 1 : i + 1 + k] for i in range(len(data) - k))
            seen_before = {
                g: len({data[i - 1] for i in range(1, len(data) - k + 1) if data[i : i + k] == g})
                for g in left
            }
            cont = {
                int(code).to_bytes(k, "big"): int(c)
                for code, c in zip(table.codes, table.cont, strict=True)
            }
            assert {g: c for g, c in cont.items() if c} == seen_before


# ----------------------------------------------------------------------------------------------
# The default maximum orders (char 8, word 4: full 64-bit codes) on real text, against Counter
# ----------------------------------------------------------------------------------------------

# Not from the built-in corpus, which is nearly all ASCII (one '£' in Austen): a passage with
# bytes >= 0x80 at every position of a window, so that many 8-byte codes use their top bit.
UTF8_PASSAGE = "Ærøskøbing: «déjà vu» au café — naïve Straße, Ελληνικά, Русский, 日本語, ½ £5 ©.\n"


@pytest.fixture(scope="module")
def real_text() -> str:
    """About 250 kB: 60 kB from each built-in work, the 10 kB of Austen around her one '£',
    and 20 numbered copies of a UTF-8 passage."""
    docs = builtin_documents()
    austen = docs[0].text
    pound = austen.index("£")
    parts = [d.text[100_000:160_000] for d in docs]
    parts.append(austen[pound - 5_000 : pound + 5_000])
    parts.append("".join(f"{i}. {UTF8_PASSAGE}" for i in range(20)))
    return "\n".join(parts)


def windows(symbols: bytes | list[int], k: int) -> Counter:
    """collections.Counter over every window of k symbols (bytes, or tuples of ids)."""
    if isinstance(symbols, bytes):
        return Counter(symbols[i : i + k] for i in range(len(symbols) - k + 1))
    return Counter(zip(*(symbols[j : len(symbols) - k + 1 + j] for j in range(k)), strict=True))


def unpack(code: int, k: int, bits: int) -> bytes | tuple[int, ...]:
    """A k-gram code, first symbol in the highest bits, back to its symbols (a code that does
    not fit in k symbols is an OverflowError)."""
    if bits == 8:
        return code.to_bytes(k, "big")
    assert bits == 16
    return struct.unpack(f">{k}H", code.to_bytes(2 * k, "big"))


def assert_counts_equal_a_counter(counts: ngram.NGramCounts, grams: dict[int, Counter]) -> None:
    """Every k-gram count, k = 1..max_order, is Counter's; so is every continuation count
    (distinct symbols seen just before a k-gram = distinct (k+1)-grams ending in it)."""
    for k in range(1, counts.max_order + 1):
        table = counts.tables[k - 1]
        keys = [unpack(code, k, counts.bits) for code in table.codes.tolist()]
        assert dict(zip(keys, table.counts.tolist(), strict=True)) == grams[k], f"order {k}"
        if k < counts.max_order:
            before = Counter(g[1:] for g in grams[k + 1])
            cont = {g: c for g, c in zip(keys, table.cont.tolist(), strict=True) if c}
            assert cont == before, f"continuation counts of order {k}"


def following(grams: Counter) -> dict:
    """context -> {next symbol: count}, from a Counter of n-grams."""
    out: dict = {}
    for gram, count in grams.items():
        out.setdefault(gram[:-1], {})[gram[-1]] = count
    return out


def assert_distributions(
    model: ngram.NGramModel, grams: Counter, contexts: list, unseen: list
) -> None:
    """Every distribution sums to 1 and gives every symbol some probability. After a seen
    context h the top (raw-count) level leaves each seen symbol w at least (c(hw) - D) / c(h)
    and at most that plus the back-off weight D types(h) / c(h), counts from the Counter.
    The unseen contexts (never followed by anything) must really be unseen."""
    after = following(grams) if model.n > 1 else {}
    d = model.counts.tables[model.n - 1].raw_discount
    for context in contexts + unseen:
        probs = model.distribution(list(context))
        assert probs.shape == (model.counts.alphabet,)
        assert probs.min() > 0, context  # smoothing: nothing is impossible
        assert abs(probs.sum() - 1.0) < 1e-9, context
        seen = after.get(context)
        if context in unseen:
            assert seen is None, context
        elif model.n > 1 and len(context) == model.n - 1:
            assert seen is not None, context
            total = sum(seen.values())
            symbols = np.array(list(seen))
            low = (np.array(list(seen.values())) - d) / total
            assert np.all(probs[symbols] >= low - 1e-12), context
            assert np.all(probs[symbols] <= low + d * len(seen) / total + 1e-12), context


@pytest.fixture(scope="module")
def real_chars(real_text: str) -> ngram.CharNGrams:
    return ngram.CharNGrams([real_text], ngram.CHAR_MAX_N)


@pytest.fixture(scope="module")
def char_grams(real_text: str) -> dict[int, Counter]:
    data = real_text.encode("utf-8")
    return {k: windows(data, k) for k in range(1, ngram.CHAR_MAX_N + 1)}


@pytest.fixture(scope="module")
def real_words(real_text: str) -> ngram.WordNGrams:
    return ngram.WordNGrams([real_text], ngram.WORD_MAX_N)


@pytest.fixture(scope="module")
def word_ids(real_text: str, real_words: ngram.WordNGrams) -> list[int]:
    """The text's word ids, worked out here: a token seen once is <unk> (id 0)."""
    tokens = ngram.word_tokens(real_text)
    freq = Counter(tokens)
    assert set(real_words.vocab) == {ngram.UNK} | {t for t, c in freq.items() if c >= 2}
    return [real_words.index[t] if freq[t] >= 2 else 0 for t in tokens]


def test_char_counts_at_the_default_order_equal_a_counter(real_chars, char_grams):
    assert ngram.CHAR_MAX_N == 8 and real_chars.counts.max_order == 8
    top = real_chars.counts.tables[-1]
    high = top.codes >= np.uint64(1 << 63)  # 8-grams starting with a byte >= 0x80
    assert high.sum() > 100 and top.counts[high].sum() > 1000
    assert_counts_equal_a_counter(real_chars.counts, char_grams)


def test_word_counts_at_the_default_order_equal_a_counter(real_words, word_ids):
    assert ngram.WORD_MAX_N == 4 and real_words.counts.max_order == 4
    grams = {k: windows(word_ids, k) for k in range(1, 5)}
    assert_counts_equal_a_counter(real_words.counts, grams)
    # A real vocabulary is far below 2^15 words, so its codes never reach the top bits: the same
    # stream with every odd id moved to the top half of the 16-bit range mixes codes with and
    # without the top bit (as sorted unsigned, not signed).
    moved = [i + 0x8000 if i % 2 else i for i in word_ids]
    counts = ngram.NGramCounts(np.array(moved), 4, bits=16, alphabet=1 << 16)
    top_bit = counts.tables[-1].codes >= np.uint64(1 << 63)
    assert 0.2 < top_bit.mean() < 0.8
    grams = {k: windows(moved, k) for k in range(1, 5)}
    assert_counts_equal_a_counter(counts, grams)
    model = counts.model(4)
    contexts = list(following(grams[4]))[::500]
    assert_distributions(model, grams[4], contexts, [(0xFFFF, 3, 5)])


@pytest.mark.parametrize("bits", [8, 16])
def test_counts_stay_exact_when_real_kgrams_end_in_zeros(bits):
    # The last k-1 positions of the stream are counted zero-padded and then taken back off; here
    # those padded windows (5 0 0 0 and 7 5 0 0) are also real 4-grams of the stream.
    stream = [5, 0, 0, 0, 7, 5, 0, 0, 0, 7, 5, 0, 0, 3, 7, 5]
    counts = ngram.NGramCounts(np.array(stream), 4, bits=bits, alphabet=1 << bits)
    symbols = bytes(stream) if bits == 8 else stream
    assert_counts_equal_a_counter(counts, {k: windows(symbols, k) for k in range(1, 5)})


def test_char_distributions_at_every_order_sum_to_one(real_chars, char_grams):
    rng = np.random.default_rng(0)
    for n in range(1, ngram.CHAR_MAX_N + 1):
        model = real_chars.model(n)
        if n == 1:  # no context: whatever comes before is ignored
            assert_distributions(model, char_grams[1], [b""], [])
            assert np.array_equal(model.distribution(list(b"the")), model.distribution([]))
            continue
        seen = list(following(char_grams[n]))
        contexts = [seen[i] for i in rng.choice(len(seen), size=60, replace=False)]
        contexts += [c for c in seen if c[0] >= 0x80][:20]  # codes with the top bits set
        shorter = [c[1:] for c in contexts[:10]]  # fewer than n-1 bytes: the start of a text
        unseen = [bytes([1]) * (n - 1), b"\x01" + contexts[0][1:]]  # the second backs off
        assert len([c for c in contexts if c[0] >= 0x80]) >= 10
        assert_distributions(model, char_grams[n], contexts + shorter, unseen)
        # a context unseen at every level > 1 backs off to the same lower orders
        assert np.array_equal(model.distribution(unseen[0]), model.distribution([2] * (n - 1)))
        if n > 2:  # a seen suffix is used: backing off from it is not backing off to nothing
            assert not np.array_equal(model.distribution(unseen[0]), model.distribution(unseen[1]))


def test_word_distributions_at_every_order_sum_to_one(real_words, word_ids):
    rng = np.random.default_rng(0)
    rare = len(real_words.vocab) - 1  # the last word kept: seen twice
    for n in range(1, ngram.WORD_MAX_N + 1):
        model = real_words.model(n)
        grams = windows(word_ids, n)
        if n == 1:
            assert_distributions(model, grams, [()], [])
            continue
        seen = list(following(grams))
        contexts = [seen[i] for i in rng.choice(len(seen), size=min(80, len(seen)), replace=False)]
        contexts += [c for c in seen if 0 in c][:10]  # contexts with <unk> in them
        shorter = [c[1:] for c in contexts[:10]]
        # every kept word is followed by something: unseen contexts need two words or more
        unseen = [(rare,) * (n - 1), (rare, *contexts[0][1:])] if n > 2 else []
        assert_distributions(model, grams, contexts + shorter, unseen)


def test_scoring_uses_the_same_probabilities_as_the_distribution(small_split):
    train, val = small_split
    chars = ngram.CharNGrams(train, 4)
    data = np.frombuffer(val[0][:300].encode(), np.uint8)
    for n in (1, 2, 4):
        model = chars.model(n)
        fast = model.log2_probs(data)
        for i in (0, 1, 2, 3, 57, 299):
            slow = math.log2(model.distribution(list(data[max(0, i - n + 1) : i]))[data[i]])
            assert fast[i] == pytest.approx(slow, abs=1e-9)


def test_bits_per_byte_fall_from_n1_to_n3_on_the_builtin_corpus():
    # the whole built-in corpus: training split counted, validation split (5% tails) scored
    split = split_documents(builtin_documents())
    chars = ngram.CharNGrams([d.text for d in split.train], 3)
    bpb = chars.bits_per_byte([d.text for d in split.val])
    assert 4.2 < bpb[0] < 4.8  # letter frequencies alone: about 4.5 bits per byte
    assert bpb[0] > bpb[1] + 0.5 > bpb[2] + 1.0
    assert bpb[2] < 3.0


def test_word_bits_per_byte_count_unknown_words_honestly(small_split):
    train, val = small_split
    words = ngram.WordNGrams(train, 2)
    unseen = "Zyxwvut qqqqq blorfing the house of Mr. Flumbert.\n"
    scores = words.bits_per_byte([val[0], unseen])
    assert scores[1].bits_per_byte < scores[0].bits_per_byte  # context helps
    tokens = ngram.word_tokens(val[0]) + ngram.word_tokens(unseen)
    unknown = [t for t in tokens if t not in words.index]
    assert scores[0].tokens == len(tokens) and scores[0].unk_rate == len(unknown) / len(tokens)
    # The score of the short text, worked out token by token: -log2 P(token | the token before,
    # within the text) for every token (<unk> for an unknown one), plus the bits that spell out
    # each unknown token, over the text's UTF-8 bytes.
    tokens = ngram.word_tokens(unseen)
    ids = [words.index.get(t, 0) for t in tokens]
    model = words.model(2)
    bits = sum(
        -math.log2(model.distribution(ids[max(0, i - 1) : i])[ids[i]]) for i in range(len(ids))
    )
    bits += sum(words.spelling.bits(t) for t in tokens if t not in words.index)
    alone = words.bits_per_byte([unseen], orders=[2])[0]
    assert alone.bits_per_byte == pytest.approx(bits / len(unseen.encode("utf-8")), rel=1e-12)
    assert alone.unk_rate == ids.count(0) / len(ids) > 0.2  # Zyxwvut, qqqqq, blorfing, ...
    # the spelling model is a proper distribution over bytes and "end of token"
    assert np.exp2(words.spelling.log2_byte).sum() == pytest.approx(1.0)
    # an unknown word costs more than a common one
    only_unk = words.bits_per_byte(["Zyxwvutsrq"], orders=[1])[0]
    only_the = words.bits_per_byte([" the"], orders=[1])[0]
    assert only_unk.bits_per_byte > only_the.bits_per_byte


def test_word_tokens_give_back_the_text_and_keep_the_space_with_the_word(austen):
    text = austen[:50_000]
    tokens = ngram.word_tokens(text)
    assert "".join(tokens) == text
    assert ngram.word_tokens("It is a truth, isn't it?") == [
        "It",
        " is",
        " a",
        " truth",
        ",",
        " isn",
        "'t",
        " it",
        "?",
    ]


def test_generation_is_reproducible_and_temperature_zero_is_greedy(small_split):
    train, _ = small_split
    chars = ngram.CharNGrams(train, 4)
    a = chars.generate(4, "The", 80, seed=3, temperature=1.0)
    assert a == chars.generate(4, "The", 80, seed=3, temperature=1.0)
    assert a != chars.generate(4, "The", 80, seed=4, temperature=1.0)
    greedy = chars.generate(4, "The", 30, seed=1, temperature=0)
    assert greedy == chars.generate(4, "The", 30, seed=2, temperature=0)
    model, history = chars.model(4), list(b"The")
    for byte in greedy[3:].encode():
        assert byte == int(np.argmax(model.distribution(history)))
        history.append(byte)
    words = ngram.WordNGrams(train, 2)
    text = words.generate(2, "The", 60, seed=0)
    assert text.startswith("The") and len(text) >= 63 and ngram.UNK not in text


def test_temperature_reshapes_probabilities_as_p_to_the_one_over_t():
    rng = np.random.default_rng(0)
    probs = np.array([0.2, 0.8])
    draws = [ngram.sample(probs, rng, 0.5) for _ in range(20_000)]
    expected = probs**2 / (probs**2).sum()  # T = 0.5: p^2, renormalised
    assert np.mean(draws) == pytest.approx(expected[1], abs=0.01)
    assert ngram.sample(np.array([0.1, 0.3, 0.6]), rng, 0.0) == 2


def test_letters_and_pairs():
    stats = ngram.letter_frequencies(["Queen quietly quit; AAb."])
    assert stats.counts[0] == 2 and stats.counts[ord("q") - 97] == 3 and stats.total == 19
    pairs = ngram.letter_pairs(["Queen quietly quit; AAb."])
    cond = pairs.conditional
    assert cond[ord("q") - 97, ord("u") - 97] == 1.0
    rows = cond.sum(axis=1)
    assert np.allclose(rows[rows > 0], 1.0)
    # "; " collapses to one space symbol: t -> space once, space -> q twice
    assert pairs.counts[ord("t") - 97, 26] == 1 and pairs.counts[26, ord("q") - 97] == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda: ngram.CharNGrams(["some text"], 0),
        lambda: ngram.CharNGrams(["some text"], 9),
        lambda: ngram.WordNGrams(["some text"], 5),
        lambda: ngram.CharNGrams([""], 3),
        lambda: ngram.WordNGrams([""], 2),
        lambda: ngram.CharNGrams(["ab"], 3),
        lambda: ngram.WordNGrams(["hi"], 2),
        lambda: ngram.CharNGrams(["some text"], 2).model(3),
        lambda: ngram.CharNGrams(["some text"], 2).generate(2, "", 10, 0, -1.0),
        lambda: ngram.CharNGrams(["some text"], 2).generate(2, "", 0, 0, 1.0),
        lambda: ngram.letter_frequencies(["1234 !!"]),
    ],
)
def test_bad_input_is_a_glass_error(make):
    with pytest.raises(GlassError):
        make()


# ----------------------------------------------------------------------------------------------
# The command's pictures, read back and compared with the numbers they draw
# ----------------------------------------------------------------------------------------------


def split_texts(path: Path) -> tuple[list[str], list[str]]:
    """The training and validation texts the command makes of a --data file."""
    split = split_documents(load_documents(str(path)))
    return [d.text for d in split.train], [d.text for d in split.val]


Row = tuple[int, int, float]  # n, distinct contexts, validation bits per byte


def model_rows(
    train: list[str], val: list[str], max_n: int, words_max_n: int
) -> tuple[list[Row], list[Row]]:
    """The numbers of the command's model table, worked out again."""
    chars, words = ngram.CharNGrams(train, max_n), ngram.WordNGrams(train, words_max_n)
    char_bpb = chars.bits_per_byte(val)
    word_bpb = [s.bits_per_byte for s in words.bits_per_byte(val)]
    return (
        [(n, chars.model(n).contexts, char_bpb[n - 1]) for n in range(1, max_n + 1)],
        [(n, words.model(n).contexts, word_bpb[n - 1]) for n in range(1, words_max_n + 1)],
    )


def assert_letters_png(path: Path, letters: ngram.LetterStats) -> None:
    """A bar per letter a..z in its place, as tall as its frequency (y from 0 to 1.05 x the
    largest); a bar under 5 pixels may be too short to find."""
    image = read_rgb(path)
    box = axes_box(image)
    top, bottom, _, _ = box
    heights = letters.probabilities / (1.05 * letters.probabilities.max()) * (bottom - top)
    middles, _ = autoscaled(box, np.arange(26), np.zeros(26), [-0.4, 25.4], [0, 1])
    found = bars(colour_mask(image, "#3b6ea8", tol=0.05), box, horizontal=False)
    assert sum(h >= 5 for h in heights) <= len(found) <= 26
    for middle, first, last in found:
        i = int(np.argmin(np.abs(middles - middle)))
        assert abs(middles[i] - middle) <= 3, (middle, middles)
        assert bottom - last <= 3, (letters.letters[i], last)
        assert abs((bottom - first) - heights[i]) <= 2.5, (letters.letters[i], first, heights[i])


def assert_pairs_png(path: Path, pairs: ngram.PairStats) -> None:
    """27 x 27 cells, row = first letter: blank exactly where the pair was never seen, elsewhere
    coloured (viridis, log scale from 1e-4 to 1) by P(second | first)."""
    image = read_rgb(path)
    box = frames(image)[0]  # the colour bar is too narrow to be a frame
    probs = pairs.conditional
    for i, row in enumerate(cell_centres(box, 27, 27)):
        for j, (y, x) in enumerate(row):
            pair = pairs.symbols[i] + pairs.symbols[j]
            if pairs.counts[i, j] == 0:
                assert image[y, x].min() > 0.97, pair
                continue
            value, miss = cmap_value(image[y, x], "viridis")
            expected = (np.log10(max(probs[i, j], 1e-4)) + 4) / 4
            assert miss < 0.02 and abs(value - expected) < 0.01, (pair, value, expected)


def assert_models_png(
    path: Path, char_rows: list[Row], word_rows: list[Row], gpt_bpbs: Sequence[float] = ()
) -> None:
    """Left: distinct contexts per n (log scale); right: bits per byte per n; characters as blue
    circles, words as orange squares; each GPT, when given, as a dashed line at its bits per byte
    in its own colour (crimson first)."""
    image = read_rgb(path)
    panels = frames(image)
    assert len(panels) == 2
    every = len(char_rows) + len(word_rows)
    left = [
        (colour, [n for n, _, _ in rows], [np.log10(max(c, 1)) for _, c, _ in rows])
        for rows, colour in ((char_rows, "C0"), (word_rows, "C1"))
    ]
    assert_markers(image, panels[0], left, min_checked=every - 1)  # n = 1: one context each
    right = [
        (colour, [n for n, _, _ in rows], [bpb for _, _, bpb in rows])
        for rows, colour in ((char_rows, "C0"), (word_rows, "C1"))
    ]
    extra = list(gpt_bpbs)
    assert_markers(image, panels[1], right, min_checked=every, extra_y=extra)
    top, bottom, left_px, right_px = panels[1]
    xs = [x for _, ns, _ in right for x in ns]
    ys = [y for _, _, bpbs in right for y in bpbs] + extra
    for i, colour in enumerate(GPT_COLOURS):
        mask = colour_mask(image, colour, tol=0.1)[top + 2 : bottom - 1, left_px + 2 : right_px - 1]
        rows = top + 2 + np.flatnonzero(mask.sum(axis=1) > 0.3 * mask.shape[1])  # dashes across
        if i >= len(gpt_bpbs):
            assert not mask.any(), colour
            continue
        _, expected = autoscaled(panels[1], [1], [gpt_bpbs[i]], xs, ys)
        assert len(rows) and abs(rows.mean() - expected[0]) <= 2, (colour, rows, expected)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max-n", "9"], "--max-n must be 1..8"),
        (["--model", "a"] * 5, "--model can be given at most 4 times"),
        (["--max-n", "0"], "--max-n must be 1..8"),
        (["--words-max-n", "5"], "--words-max-n must be 0..4"),
        (["--temperature", "-1"], "temperature must be"),
        (["--length", "0"], "--length must be"),
    ],
)
def test_command_rejects_bad_options_in_one_line(argv, message, capsys, tmp_path):
    assert main(["ngram", *argv, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_command_rejects_an_empty_corpus_in_one_line(capsys, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    assert main(["ngram", "--data", str(tmp_path / "empty.txt"), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "empty" in err and err.count("\n") == 1


def test_model_option_adds_the_gpt_and_rejects_a_non_run(austen, capsys, tmp_path, tiny_run):
    data = tmp_path / "austen.txt"
    data.write_text(austen[:100_000])
    argv = [
        "ngram",
        "--data",
        str(data),
        "--max-n",
        "2",
        "--words-max-n",
        "1",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*argv, "--model", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "not a glassgpt run folder" in err and err.count("\n") == 1
    assert main([*argv, "--model", str(tiny_run)]) == 0
    printed = capsys.readouterr().out
    gpt_line = next(line for line in printed.splitlines() if line.startswith("GPT "))
    gpt_bpb = float(gpt_line.split(": ")[1].split()[0])
    # the GPT's bits per byte on the very validation text the n-grams were scored on ...
    train, val = split_texts(data)
    assert gpt_bpb == pytest.approx(bits_per_byte(tiny_run, "".join(val)).bpb, abs=6e-4)
    # ... drawn as a red line at that height among the n-gram models' bits per byte
    rows = model_rows(train, val, 2, 1)
    assert_models_png(tmp_path / "o" / "ngram_models.png", *rows, [gpt_bpb])
    # a second GPT (all weights zero: uniform over the vocabulary) gets its own line, and both
    # go into the table of every model, best first
    uniform = tmp_path / "uniform"
    shutil.copytree(tiny_run, uniform)
    weights, step = RunFolder(uniform).load_weights()
    RunFolder(uniform).save_weights({k: torch.zeros_like(v) for k, v in weights.items()}, step)
    assert main([*argv, "--model", str(tiny_run), "--model", str(uniform)]) == 0
    printed = capsys.readouterr().out
    uniform_bpb = bits_per_byte(uniform, "".join(val)).bpb
    assert_models_png(tmp_path / "o" / "ngram_models.png", *rows, [gpt_bpb, uniform_bpb])
    table = printed[printed.index("Counting vs networks"):].splitlines()[1:]
    entries = [(cells[1].strip(), float(cells[2])) for cells in (line.split("|") for line in table[2:7])]
    assert [bpb for _, bpb in entries] == sorted(bpb for _, bpb in entries)
    names = [name for name, _ in entries]
    assert {"character 1-gram", "character 2-gram", "word 1-gram"} < set(names)
    assert f"GPT uniform ({RunFolder(uniform).load_config().model.num_parameters() / 1e6:.1f}M params)" in names
    assert dict(entries)["character 2-gram"] == pytest.approx(rows[0][1][2], abs=6e-4)


def test_command_prints_tables_and_writes_pictures(austen, capsys, tmp_path):
    data = tmp_path / "austen.txt"
    data.write_text(austen[:300_000])
    out = tmp_path / "out"
    argv = ["ngram", "--data", str(data), "--max-n", "5", "--words-max-n", "2"]
    assert main([*argv, "--length", "60", "--seed", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Letter frequencies" in printed and "q→u 100%" in printed
    assert "Kneser-Ney" in printed and "val bits/byte" in printed
    assert "char n=5: The" in printed and "word n=2: The" in printed
    train, val = split_texts(data)
    assert_letters_png(out / "letters.png", ngram.letter_frequencies(train))
    assert_pairs_png(out / "pairs.png", ngram.letter_pairs(train))
    assert_models_png(out / "ngram_models.png", *model_rows(train, val, 5, 2))
