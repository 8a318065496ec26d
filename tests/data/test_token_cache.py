from pathlib import Path

import numpy as np
import pytest

import glassgpt.tokenizer as tokenizer_module
from glassgpt.data import token_cache
from glassgpt.data.corpus import Document, builtin_documents
from glassgpt.data.token_cache import encode_documents, token_dtype
from glassgpt.errors import GlassError
from glassgpt.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def docs():
    texts = [d.text[:50_000] for d in builtin_documents()[:2]]
    return [Document("a", texts[0]), Document("b", texts[1]), Document("empty", "")]


@pytest.fixture(scope="module")
def tok(docs):
    return Tokenizer.train_bpe([d.text for d in docs], vocab_size=400)


def _expected(tok, docs, encode=None):
    encode = encode or tok.encode
    return [i for d in docs if d.text for i in [tok.bos_id, *encode(d.text), tok.eos_id]]


def _documents(ids: list[int], tok: Tokenizer) -> list[list[int]]:
    """The runs of ordinary tokens between special tokens."""
    out: list[list[int]] = [[]]
    for i in ids:
        if i in (tok.bos_id, tok.eos_id):
            out.append([])
        else:
            out[-1].append(i)
    return out


def test_every_document_starts_with_bos_and_ends_with_eos(tok, docs):
    tokens = encode_documents(tok, docs, cache_dir=None)
    assert tokens.ids.dtype == np.uint16 and tokens.ids.ndim == 1
    ids = tokens.ids.tolist()
    assert ids == _expected(tok, docs)
    # The empty document is left out: two documents, each bos ... eos, nothing in between.
    assert tokens.num_docs == 2
    assert ids.count(tok.bos_id) == ids.count(tok.eos_id) == 2
    a, b = (tok.encode(d.text) for d in docs[:2])
    assert ids == [tok.bos_id, *a, tok.eos_id, tok.bos_id, *b, tok.eos_id]
    # Special tokens stand for no text: bytes are the documents' own.
    assert tokens.num_bytes == sum(len(d.text.encode("utf-8")) for d in docs)
    assert len(tokens) == len(tokens.ids)


def test_gpt2_stream_has_one_endoftext_between_documents():
    gpt2 = Tokenizer.gpt2()
    assert gpt2.bos_id == gpt2.eos_id
    texts = ["First document.", "", "Second one,\nwith a line.", "Third: the end"]
    tokens = encode_documents(gpt2, [Document(str(i), t) for i, t in enumerate(texts)])
    ids = tokens.ids.tolist()
    eot = gpt2.eos_id
    expected = [eot]
    for text in texts:
        if text:
            expected += [*gpt2.encode(text), eot]
    assert ids == expected
    assert ids[0] == ids[-1] == eot  # every document is preceded and followed by a separator
    assert all(not (x == y == eot) for x, y in zip(ids, ids[1:], strict=False))  # never doubled
    assert _documents(ids, gpt2)[1:-1] == [gpt2.encode(t) for t in texts if t]
    assert tokens.num_docs == 3
    assert tokens.num_bytes == sum(len(t.encode("utf-8")) for t in texts)


def test_second_call_loads_from_cache(tok, docs, tmp_path: Path, monkeypatch):
    first = encode_documents(tok, docs, cache_dir=tmp_path / "cache")
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 2 and files[0].endswith(".bin") and files[1].endswith(".json")

    def boom(*args, **kwargs):
        raise AssertionError("tokenized again instead of using the cache")

    monkeypatch.setattr(tok, "encode", boom)
    monkeypatch.setattr(tok, "encode_many", boom)
    second = encode_documents(tok, docs, cache_dir=tmp_path / "cache")
    assert isinstance(second.ids, np.memmap)
    assert np.array_equal(first.ids, second.ids)
    assert (second.num_bytes, second.num_docs) == (first.num_bytes, first.num_docs)


def test_cache_key_depends_on_text_names_and_tokenizer(tok, docs, tmp_path: Path):
    encode_documents(tok, docs, cache_dir=tmp_path)
    encode_documents(tok, docs[:1] + [Document("b", docs[1].text + "!")], cache_dir=tmp_path)
    encode_documents(tok, [Document("renamed", docs[0].text)] + docs[1:], cache_dir=tmp_path)
    char = Tokenizer.train_char(d.text for d in docs)
    encode_documents(char, docs, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.bin"))) == 4


def test_a_cache_of_another_format_is_not_used(tok, docs, tmp_path: Path, monkeypatch):
    """Entries written by an older format (v1: no eos) get a different key: rebuilt, not read."""
    monkeypatch.setattr(token_cache, "CACHE_FORMAT", "glassgpt-tokens-v1")
    old_key = token_cache.cache_key(tok, docs)
    encode_documents(tok, docs, cache_dir=tmp_path)
    monkeypatch.undo()
    assert token_cache.cache_key(tok, docs) != old_key
    tokens = encode_documents(tok, docs, cache_dir=tmp_path)
    assert tokens.ids.tolist() == _expected(tok, docs)
    assert len(list(tmp_path.glob("*.bin"))) == 2


def test_damaged_cache_is_rebuilt(tok, docs, tmp_path: Path):
    encode_documents(tok, docs, cache_dir=tmp_path)
    (bin_path,) = tmp_path.glob("*.bin")
    bin_path.write_bytes(bin_path.read_bytes()[:100])
    tokens = encode_documents(tok, docs, cache_dir=tmp_path)
    assert tokens.ids.tolist() == _expected(tok, docs)


def test_big_documents_in_pieces_with_progress(tok, docs, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(tokenizer_module, "_CHUNK_CHARS", 2000)
    tokens = encode_documents(tok, docs, cache_dir=tmp_path, show_progress=True)
    assert tokens.ids.tolist() == _expected(tok, docs, tok.encode_hf)


def test_unwritable_cache_folder(tok, docs, tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(GlassError, match="cannot write the token cache"):
        encode_documents(tok, docs, cache_dir=blocker / "cache")


def test_dtype_fits_vocab():
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32
    assert token_dtype(Tokenizer.gpt2().vocab_size) == np.uint16
