from pathlib import Path

import pytest

from glassgpt.data.corpus import builtin_documents, load_documents, split_documents
from glassgpt.errors import GlassError


def test_builtin_corpus_has_four_works_and_split_is_disjoint_tails():
    docs = builtin_documents()
    assert [d.name for d in docs] == ["austen", "kjv", "mobydick", "shakespeare"]
    assert sum(len(d.text) for d in docs) > 13_000_000
    split = split_documents(docs, val_fraction=0.05)
    for full, train, val in zip(docs, split.train, split.val, strict=True):
        assert train.text + val.text == full.text
        assert 0.03 < len(val.text) / len(full.text) < 0.07
        assert val.text and not full.text.startswith(val.text)


def test_load_file_folder_and_glob(tmp_path: Path):
    (tmp_path / "a.txt").write_text("alpha " * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("beta " * 100)
    assert len(load_documents(str(tmp_path / "a.txt"))) == 1
    assert len(load_documents(str(tmp_path))) == 2
    assert len(load_documents(str(tmp_path / "*.txt"))) == 1


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"ab\x00cd" * 10, "binary"), (b"caf\xe9 " * 10, "not UTF-8")],
)
def test_bad_files_give_clear_errors(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(GlassError, match=message):
        load_documents(str(path))


def test_missing_path_and_empty_folder(tmp_path: Path):
    with pytest.raises(GlassError, match="no such file"):
        load_documents(str(tmp_path / "nope"))
    with pytest.raises(GlassError, match="no .txt files"):
        load_documents(str(tmp_path))
