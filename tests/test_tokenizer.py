import json
import lzma
from itertools import pairwise
from pathlib import Path

import pytest
import regex
import tokenizers

import glassgpt.tokenizer as tokenizer_module
from glassgpt.assets import asset
from glassgpt.data.corpus import builtin_documents
from glassgpt.errors import GlassError
from glassgpt.tokenizer import SPECIAL_TOKENS, Tokenizer, split_for_encoding

MIXED = (
    "Hello, world! It's a test -- don't panic, they'll see.\n\n"
    "def add(a, b):\n    return a + b  # sum\n\tindented\twith tabs\n"
    "Emoji: 😀🎉👍🏽 and CJK: 日本語のテキスト、中文字符。 한국어\n"
    "Multiple     spaces   here,\r\n trailing   \n\n\n  numbers 12345 3.14159 1,000,000\n"
    "Ünïcödé àccents — “quotes” ‘single’ … end"
)


@pytest.fixture(scope="module")
def docs():
    return builtin_documents()


@pytest.fixture(scope="module")
def bpe(docs):
    """A small BPE trained on ~1.2 MB of the built-in corpus."""
    return Tokenizer.train_bpe([d.text[:300_000] for d in docs], vocab_size=768)


@pytest.fixture(scope="module")
def gpt2():
    return Tokenizer.gpt2()


@pytest.fixture(scope="module")
def char(docs):
    # "<|>" so that special-token text can be encoded as ordinary characters
    return Tokenizer.train_char([d.text[:300_000] for d in docs] + [MIXED, "<|>"])


# ---------------------------------------------------------------- reference GPT-2 (encoder.py)


def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def _reference_gpt2_encode(text: str) -> list[int]:
    """GPT-2's original encoder.py algorithm, independent of the code under test."""
    folder = asset("gpt2")
    encoder = json.loads(lzma.decompress((folder / "encoder.json.xz").read_bytes()))
    merges = lzma.decompress((folder / "vocab.bpe.xz").read_bytes()).decode().split("\n")[1:-1]
    ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
    byte_encoder = _bytes_to_unicode()
    pat = regex.compile(
        r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    )

    def bpe(token: str) -> list[str]:
        word = tuple(token)
        while len(word) > 1:
            pairs = set(pairwise(word))
            bigram = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if bigram not in ranks:
                break
            first, second = bigram
            new_word, i = [], 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
        return list(word)

    ids = []
    for piece in pat.findall(text):
        mapped = "".join(byte_encoder[b] for b in piece.encode("utf-8"))
        ids.extend(encoder[t] for t in bpe(mapped))
    return ids


# ---------------------------------------------------------------- tests


def test_specials_are_at_the_end(bpe, char):
    for tok in (bpe, char):
        first = tok.vocab_size - len(SPECIAL_TOKENS)
        assert tok.special_ids == {s: first + i for i, s in enumerate(SPECIAL_TOKENS)}
        assert (tok.bos_id, tok.eos_id, tok.pad_id) == (first, first + 1, first + 2)
        assert tok.decode([tok.bos_id]) == "<|bos|>"
    assert bpe.vocab_size == 768 and bpe.kind == "bpe" and bpe.fast


def test_leading_space_is_part_of_tokens(bpe):
    assert len(bpe.encode(" the")) == 1
    assert bpe.token_str(bpe.encode(" the")[0]) == " the"
    assert [bpe.token_str(i) for i in bpe.encode("and the")] == ["and", " the"]


@pytest.mark.parametrize("name", ["bpe", "gpt2"])
def test_round_trip_mixed_text(name, request):
    tok = request.getfixturevalue(name)
    ids = tok.encode(MIXED)
    assert tok.decode(ids) == MIXED
    assert tok.decode_bytes(ids) == MIXED.encode("utf-8")
    assert b"".join(tok.token_bytes(i) for i in ids) == MIXED.encode("utf-8")
    assert tok.encode("") == [] and tok.decode([]) == ""


@pytest.mark.parametrize("name", ["bpe", "gpt2", "char"])
def test_special_text_is_ordinary_unless_allowed(name, request):
    tok = request.getfixturevalue(name)
    special = "<|endoftext|>" if name == "gpt2" else "<|bos|>"
    text = f"Hello {special} there"
    plain = tok.encode(text)
    assert tok.bos_id not in plain
    assert tok.decode(plain) == text
    assert plain == tok.encode_hf(text)
    allowed = tok.encode(text, allow_special=True)
    assert allowed.count(tok.bos_id) == 1
    assert allowed == tok.encode("Hello ") + [tok.bos_id] + tok.encode(" there")
    assert allowed == tok.encode_hf(text, allow_special=True)
    assert tok.decode(allowed) == text


def test_tiktoken_path_matches_tokenizers_on_corpus(bpe, docs):
    assert bpe.encode(MIXED) == bpe.encode_hf(MIXED)
    for doc in docs:
        sample = doc.text[:200_000]
        assert bpe.encode(sample) == bpe.encode_hf(sample), doc.name


def test_long_texts_are_split_without_changing_ids(bpe, docs, monkeypatch):
    text = docs[3].text[:60_000] + MIXED * 20 + "x" * 5000 + "   \n\n  \t" * 100
    pieces = split_for_encoding(text, 1000)
    assert len(pieces) > 20 and "".join(pieces) == text
    expected = bpe.encode_hf(text)
    monkeypatch.setattr(tokenizer_module, "_CHUNK_CHARS", 1000)
    assert bpe.encode(text) == expected
    assert bpe.encode_many([text, MIXED], num_threads=2) == [expected, bpe.encode_hf(MIXED)]


def test_gpt2_matches_reference_implementation(gpt2):
    assert gpt2.kind == "gpt2" and gpt2.fast and gpt2.vocab_size == 50257
    assert gpt2.special_ids == {"<|endoftext|>": 50256}
    assert gpt2.bos_id == gpt2.eos_id == gpt2.pad_id == 50256
    expected = _reference_gpt2_encode(MIXED)
    assert gpt2.encode(MIXED) == expected
    assert gpt2.encode_hf(MIXED) == expected
    assert gpt2.encode("Hello world") == [15496, 995]  # well-known GPT-2 ids


@pytest.mark.parametrize("name", ["bpe", "gpt2", "char"])
def test_save_load_round_trip(name, request, tmp_path: Path, docs):
    from transformers import PreTrainedTokenizerFast

    tok = request.getfixturevalue(name)
    file = tok.save(tmp_path / "run" / "tokenizer.json")
    assert sorted(p.name for p in file.parent.iterdir()) == ["tokenizer.json"]  # no temp files
    loaded = Tokenizer.load(file.parent)
    assert (loaded.kind, loaded.vocab_size, loaded.fast) == (tok.kind, tok.vocab_size, tok.fast)
    assert loaded.special_ids == tok.special_ids
    text = MIXED + docs[0].text[:20_000]
    ids = tok.encode(text)
    assert loaded.encode(text) == ids
    assert tokenizers.Tokenizer.from_file(str(file)).encode(text).ids == ids
    hf = PreTrainedTokenizerFast(tokenizer_file=str(file))
    assert hf.encode(text, add_special_tokens=False) == ids
    assert hf.decode(ids) == text


def test_char_level(char):
    assert char.kind == "char" and not char.fast
    ids = char.encode(MIXED)
    assert len(ids) == len(MIXED) and char.decode(ids) == MIXED
    chars = [char.token_str(i) for i in range(char.vocab_size - len(SPECIAL_TOKENS))]
    assert chars == sorted(chars) and all(len(c) == 1 for c in chars)
    with pytest.raises(GlassError, match="never saw"):
        char.encode("snowman ☃")


def test_token_str_shows_partial_utf8_escaped(gpt2):
    ids = gpt2.encode("😀")
    assert len(ids) > 1
    assert gpt2.token_str(ids[0]).startswith("\\x")
    assert gpt2.token_str(gpt2.encode(" hello")[0]) == " hello"
    with pytest.raises(ValueError):
        gpt2.token_bytes(50257)
    with pytest.raises(ValueError):
        gpt2.decode([15496, -1])


def test_tokenizers_fallback_gives_same_ids(bpe, monkeypatch):
    expected = bpe.encode(MIXED)
    monkeypatch.setattr(bpe, "_fast", None)  # as when a file cannot be reproduced by tiktoken
    assert not bpe.fast
    assert bpe.encode(MIXED) == expected
    assert bpe.encode_many([MIXED, "<|bos|>"]) == [expected, bpe.encode_hf("<|bos|>")]
    assert bpe.bos_id not in bpe.encode("<|bos|>")


@pytest.mark.parametrize("size", [0, 100, 264])
def test_bad_vocab_size(size):
    with pytest.raises(GlassError, match="vocab size must be at least 265"):
        Tokenizer.train_bpe(["some text"], vocab_size=size)


def test_no_training_text():
    with pytest.raises(GlassError, match="no text"):
        Tokenizer.train_bpe([], vocab_size=300)
    with pytest.raises(GlassError, match="no text"):
        Tokenizer.train_char([""])


def test_bad_tokenizer_files(bpe, tmp_path: Path):
    missing = tmp_path / "nope.json"
    with pytest.raises(GlassError, match="nope.json does not exist"):
        Tokenizer.load(missing)

    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(GlassError, match="garbage.json is corrupted"):
        Tokenizer.load(garbage)

    truncated = tmp_path / "truncated.json"
    truncated.write_text(bpe.to_json()[:5000])
    with pytest.raises(GlassError, match="truncated.json is corrupted"):
        Tokenizer.load(truncated)

    foreign = tokenizers.Tokenizer(tokenizers.models.BPE())
    foreign.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    foreign.train_from_iterator(
        ["hello world"] * 10, tokenizers.trainers.BpeTrainer(vocab_size=300)
    )
    foreign.save(str(tmp_path / "foreign.json"))
    with pytest.raises(GlassError, match="foreign.json does not have glassgpt's special tokens"):
        Tokenizer.load(tmp_path / "foreign.json")
