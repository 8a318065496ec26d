from pathlib import Path

import numpy as np
import pytest

import glassgpt.tokenizer as tokenizer_module
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


def _expected(tok, docs):
    return [i for d in docs for i in [tok.bos_id] + tok.encode(d.text)]


def test_documents_start_with_bos(tok, docs):
    tokens = encode_documents(tok, docs, cache_dir=None)
    assert tokens.ids.dtype == np.uint16 and tokens.ids.ndim == 1
    assert tokens.ids.tolist() == _expected(tok, docs)
    assert int((tokens.ids == tok.bos_id).sum()) == tokens.num_docs == 3
    assert tokens.num_bytes == sum(len(d.text.encode("utf-8")) for d in docs)
    assert len(tokens) == len(tokens.ids)


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


def test_damaged_cache_is_rebuilt(tok, docs, tmp_path: Path):
    encode_documents(tok, docs, cache_dir=tmp_path)
    (bin_path,) = tmp_path.glob("*.bin")
    bin_path.write_bytes(bin_path.read_bytes()[:100])
    tokens = encode_documents(tok, docs, cache_dir=tmp_path)
    assert tokens.ids.tolist() == _expected(tok, docs)


def test_big_documents_in_pieces_with_progress(tok, docs, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(tokenizer_module, "_CHUNK_CHARS", 2000)
    tokens = encode_documents(tok, docs, cache_dir=tmp_path, show_progress=True)
    expected = [i for d in docs for i in [tok.bos_id] + tok.encode_hf(d.text)]
    assert tokens.ids.tolist() == expected


def test_unwritable_cache_folder(tok, docs, tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(GlassError, match="cannot write the token cache"):
        encode_documents(tok, docs, cache_dir=blocker / "cache")


def test_dtype_fits_vocab():
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32
    assert token_dtype(Tokenizer.gpt2().vocab_size) == np.uint16
