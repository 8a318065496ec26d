import hashlib
import json
import lzma
import socket
from itertools import pairwise
from pathlib import Path

import pytest
import regex
import tiktoken
import tiktoken.load
import tiktoken.registry
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


def test_new_tokenizers_put_their_specials_at_the_end(bpe, char):
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
    specials = set(char.special_ids.values())
    chars = [char.token_str(i) for i in range(char.vocab_size) if i not in specials]
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
    with pytest.raises(GlassError, match=r"foreign.json has no special token <\|bos\|>"):
        Tokenizer.load(tmp_path / "foreign.json")


# ---------------------------------------------------------------- special tokens as the file has them


def _with_added(tok: Tokenizer, tokens: list[str], special: bool = True) -> tokenizers.Tokenizer:
    """A copy of `tok`'s Hugging Face tokenizer with `tokens` added after its vocabulary."""
    hf = tokenizers.Tokenizer.from_str(tok.to_json())
    if special:
        hf.add_special_tokens(tokens)
    else:
        hf.add_tokens(tokens)
    return hf


def _check_loads_and_round_trips(file: Path, like: Tokenizer) -> Tokenizer:
    """`file` loads, encodes like `like` and like `tokenizers`, decodes, and saves unchanged."""
    loaded = Tokenizer.load(file)
    text = MIXED + " <|bos|> <|tool|> <|endoftext|> " + MIXED
    ids = loaded.encode(text)
    assert ids == like.encode(text) == loaded.encode_hf(text)
    assert loaded.decode(ids) == text
    special = loaded.encode(text, allow_special=True)
    assert special == loaded.encode_hf(text, allow_special=True)
    assert loaded.decode(special) == text
    again = Tokenizer.load(loaded.save(file.parent / "again.json"))
    assert again.special_ids == loaded.special_ids and again.kind == loaded.kind
    assert again.encode(text, allow_special=True) == special
    assert [again.token_bytes(i) for i in range(again.vocab_size)] == [
        loaded.token_bytes(i) for i in range(loaded.vocab_size)
    ]
    return loaded


@pytest.mark.parametrize("name", ["bpe", "char", "gpt2"])
def test_a_special_token_added_later_still_loads(name, request, tmp_path: Path):
    """Adding a token to an existing tokenizer.json never makes it (or its runs) unloadable."""
    tok = request.getfixturevalue(name)
    file = tmp_path / "tokenizer.json"
    _with_added(tok, ["<|tool|>"]).save(str(file))
    loaded = _check_loads_and_round_trips(file, like := tok)
    assert loaded.kind == like.kind and loaded.fast == like.fast
    assert loaded.vocab_size == like.vocab_size + 1
    assert loaded.special_ids == {**like.special_ids, "<|tool|>": like.vocab_size}
    assert (loaded.bos_id, loaded.eos_id, loaded.pad_id) == (like.bos_id, like.eos_id, like.pad_id)
    assert loaded.token_bytes(like.vocab_size) == b"<|tool|>"
    assert loaded.encode("<|tool|>", allow_special=True) == [like.vocab_size]
    assert like.vocab_size not in loaded.encode("<|tool|>")


def test_specials_in_another_order_and_place_load(tmp_path: Path):
    """A BPE with its specials first (ids 0..), eos before bos and no pad, loads and works."""
    order = ["<|eos|>", "<|tool|>", "<|bos|>"]
    hf = tokenizers.Tokenizer(tokenizers.models.BPE())
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=order,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    hf.train_from_iterator([d.text[:100_000] for d in builtin_documents()[:2]], trainer=trainer)
    file = tmp_path / "tokenizer.json"
    hf.save(str(file))
    loaded = Tokenizer.load(file)
    assert loaded.kind == "bpe" and loaded.fast
    assert loaded.special_ids == {"<|eos|>": 0, "<|tool|>": 1, "<|bos|>": 2}
    assert (loaded.bos_id, loaded.eos_id) == (2, 0)
    assert loaded.pad_id == loaded.eos_id  # no <|pad|>: padding falls back to eos
    assert loaded.token_bytes(0) == b"<|eos|>" and loaded.token_bytes(3) != b"<|bos|>"
    _check_loads_and_round_trips(file, loaded)


def test_added_tokens_not_marked_special_are_kept(bpe, tmp_path: Path):
    file = tmp_path / "tokenizer.json"
    _with_added(bpe, ["glassgpt"], special=False).save(str(file))
    loaded = Tokenizer.load(file)
    assert not loaded.fast  # tiktoken cannot cut added tokens out of text; `tokenizers` does
    assert loaded.special_ids == bpe.special_ids
    text = "I use glassgpt daily. " + MIXED
    ids = loaded.encode(text)
    assert bpe.vocab_size in ids and ids == loaded.encode_hf(text)
    assert loaded.decode(ids) == text


def test_a_tokenizer_without_bos_is_refused_with_the_fix(bpe, tmp_path: Path):
    config = json.loads(bpe.to_json())
    for token in config["added_tokens"]:
        if token["content"] == "<|bos|>":
            token["special"] = False  # still in the file, but no longer a special token
    file = tmp_path / "tokenizer.json"
    file.write_text(json.dumps(config))
    with pytest.raises(GlassError) as info:
        Tokenizer.load(file)
    message = str(info.value)
    assert "\n" not in message
    assert "has no special token <|bos|>" in message and "<|eos|>" in message
    assert "train the tokenizer with glassgpt" in message


# ---------------------------------------------------------------- GPT-2 against real tiktoken, offline

# What tiktoken_ext/openai_public.py's gpt2() reads (through tiktoken.load.read_file_cached,
# which looks in $TIKTOKEN_CACHE_DIR for sha1(url) and checks the sha256 of what it finds).
TIKTOKEN_GPT2_FILES = {
    "vocab.bpe.xz": (
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    ),
    "encoder.json.xz": (
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    ),
}

EDGE_CASES = [
    "",
    " ",
    "\n",
    "line one\r\nline two\r\n",
    "\r\n\r\n\r\nafter blank CRLF lines\r\n",
    "lone\rreturn\r",
    "trailing spaces   ",
    "trailing spaces then newline   \n",
    "   leading spaces",
    "a   b    c\t\td \n \n  \n",
    "tabs\t\t\n\t",
    "\u00a0non-breaking\u00a0space and\u2028line separator\u3000ideographic space",
    "digits 0 12 123 1234 1234567890 3.14159 1,000,000 007 1e-9 -42 ½ ²",
    "it's I'm we'll they've she'd you're can't won't IT'S I'M ’tis don’t 'quoted'",
    "emoji 😀🎉👍🏽 👨‍👩‍👧 🏳️‍🌈 ❤️ 🇫🇷",
    "CJK 日本語のテキスト、中文字符。 한국어 漢字かなカナ",
    "<|endoftext|> as text, and <|bos|>",
    "x" * 5000,
    " " * 1000 + "end",
    MIXED,
]


@pytest.fixture
def offline_tiktoken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tiktoken.Encoding:
    """tiktoken's own "gpt2" encoding, built from the files glassgpt ships, with no network."""
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    for name, (url, sha256) in TIKTOKEN_GPT2_FILES.items():
        data = lzma.decompress(asset("gpt2", name).read_bytes())
        assert hashlib.sha256(data).hexdigest() == sha256, (
            f"the packaged {name} is not the file tiktoken verifies"
        )
        (cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(data)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))

    def no_download(blobpath: str) -> bytes:
        raise AssertionError(f"tiktoken tried to download {blobpath}: the seeded cache was not used")

    def no_network(*args, **kwargs):
        raise AssertionError("the tiktoken comparison tried to open a network connection")

    monkeypatch.setattr(tiktoken.load, "read_file", no_download)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    # tiktoken keeps built encodings per process: start from none, and drop ours afterwards.
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    encoding = tiktoken.get_encoding("gpt2")
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        hashlib.sha1(url.encode()).hexdigest() for url, _ in TIKTOKEN_GPT2_FILES.values()
    )  # tiktoken deletes a cached file whose hash does not match
    return encoding


def test_gpt2_equals_real_tiktoken_offline(offline_tiktoken, gpt2, docs):
    assert offline_tiktoken.n_vocab == gpt2.vocab_size == 50257
    assert offline_tiktoken.eot_token == gpt2.eos_id
    for text in EDGE_CASES:
        assert gpt2.encode(text) == offline_tiktoken.encode_ordinary(text), repr(text[:60])
    # ~4.8 MB of prose, each document longer than one encoding chunk (so it is cut and
    # encoded in pieces on threads).
    total = 0
    for doc in docs:
        text = doc.text[:1_200_000]
        total += len(text.encode("utf-8"))
        assert gpt2.encode(text) == offline_tiktoken.encode_ordinary(text), doc.name
    assert total > 4_000_000
    text = "\r\n".join(EDGE_CASES) + docs[0].text[:50_000].replace("\n", "\r\n")
    assert gpt2.encode(text) == offline_tiktoken.encode_ordinary(text)
    assert offline_tiktoken.decode(gpt2.encode(text)) == text
