"""Counting models: exact counts, proper distributions, held-out bits per byte, the command."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from glassgpt.cli import main
from glassgpt.data.corpus import builtin_documents, split_documents
from glassgpt.errors import GlassError
from glassgpt.explain import ngram


@pytest.fixture(scope="module")
def austen() -> str:
    return builtin_documents()[0].text


@pytest.fixture(scope="module")
def small_split(austen: str) -> tuple[list[str], list[str]]:
    """200 kB of Austen for training, the next 20 kB for validation."""
    return [austen[:200_000]], [austen[200_000:220_000]]


def assert_picture(path: Path, min_width: int = 300) -> None:
    """The PNG exists, has a real size and is not blank."""
    image = imread(path)
    assert image.shape[1] >= min_width and image.shape[0] >= 200
    assert float(image[..., :3].std()) > 0.05


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


def test_char_probabilities_sum_to_one_for_every_context(small_split):
    train, _ = small_split
    chars = ngram.CharNGrams(train, 5)
    rng = np.random.default_rng(0)
    for n in range(1, 6):
        model = chars.model(n)
        table = chars.counts.tables[n - 1]
        contexts = [[int(b) for b in int(c).to_bytes(n - 1, "big")] for c in table.ctx_codes]
        picks = rng.choice(len(contexts), size=min(150, len(contexts)), replace=False)
        unseen = [[0x7F, 0x01, 0x7E, 0x02][: n - 1]]  # a context never in the text
        for context in [contexts[i] for i in picks] + unseen:
            probs = model.distribution(context)
            assert probs.shape == (256,)
            assert probs.min() > 0  # smoothing: nothing is impossible
            assert abs(probs.sum() - 1.0) < 1e-9


def test_word_probabilities_sum_to_one_for_every_context(small_split):
    train, _ = small_split
    words = ngram.WordNGrams(train, 3)
    for n in range(1, 4):
        model = words.model(n)
        table = words.counts.tables[n - 1]
        for code in table.ctx_codes[:: max(1, len(table.ctx_codes) // 100)]:
            context = [(int(code) >> (16 * (n - 2 - j))) & 0xFFFF for j in range(n - 1)]
            probs = model.distribution(context)
            assert abs(probs.sum() - 1.0) < 1e-9 and probs.min() > 0


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
    assert all(math.isfinite(s.bits_per_byte) and s.bits_per_byte > 0 for s in scores)
    assert scores[1].bits_per_byte < scores[0].bits_per_byte  # context helps
    assert 0 < scores[0].unk_rate < 0.2
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


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max-n", "9"], "--max-n must be 1..8"),
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
    assert 0 < float(gpt_line.split(": ")[1].split()[0]) < 8  # its bits per byte


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
    for name in ("letters.png", "pairs.png", "ngram_models.png"):
        assert_picture(out / name)
