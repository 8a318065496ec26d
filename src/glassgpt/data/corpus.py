"""Text sources: the built-in corpus shipped in the package, and user files, folders or globs.

Also owns the train/validation split, which is made *by document*: the tail of every
document is held out, so no text is ever in both splits.
"""

from __future__ import annotations

import glob as globlib
import lzma
from dataclasses import dataclass
from pathlib import Path

from glassgpt.assets import asset
from glassgpt.errors import GlassError

BUILTIN_NAMES = ("austen", "kjv", "mobydick", "shakespeare")


@dataclass(frozen=True)
class Document:
    """One text with the name it came from (a file name or a built-in work)."""

    name: str
    text: str


@dataclass(frozen=True)
class CorpusSplit:
    """Training and validation documents; the validation ones are the tails of the originals."""

    train: list[Document]
    val: list[Document]


def builtin_documents() -> list[Document]:
    """The built-in corpus (Austen, King James Bible, Moby Dick, Shakespeare), decompressed."""
    docs = []
    for name in BUILTIN_NAMES:
        with asset("corpus", f"{name}.txt.xz").open("rb") as raw:
            docs.append(Document(name, lzma.decompress(raw.read()).decode("utf-8")))
    return docs


def builtin_provenance() -> str:
    """The attribution text of the built-in corpus."""
    return asset("corpus", "PROVENANCE.md").read_text(encoding="utf-8")


def _read_text_file(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise GlassError(f"{path} is empty: give a file with some text in it")
    if b"\x00" in data[:65536]:
        raise GlassError(f"{path} looks binary (it has NUL bytes): give a plain UTF-8 text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise GlassError(
            f"{path} is not UTF-8 (bad byte at offset {err.start}): "
            "convert it first, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def _paths_for(spec: str) -> list[Path]:
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        paths = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not paths:
            raise GlassError(f"folder {path} has no .txt files: put your texts in .txt files")
        return paths
    if any(ch in spec for ch in "*?["):
        paths = sorted(Path(p) for p in globlib.glob(spec, recursive=True) if Path(p).is_file())
        if not paths:
            raise GlassError(f"the pattern {spec!r} matches no files")
        return paths
    raise GlassError(
        f"no such file or folder: {spec} (give a text file, a folder of .txt files, or a glob)"
    )


def load_documents(spec: str | None = None) -> list[Document]:
    """Documents from `spec` (a text file, a folder of .txt files, or a glob); None = built-in."""
    if spec is None:
        return builtin_documents()
    return [Document(str(p), _read_text_file(p)) for p in _paths_for(spec)]


def split_documents(docs: list[Document], val_fraction: float = 0.05) -> CorpusSplit:
    """Hold out the last `val_fraction` of each document (cut at a line break when one is near).

    A document too short to split (under 200 characters) goes entirely to training.
    """
    if not 0.0 < val_fraction < 1.0:
        raise GlassError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    train, val = [], []
    for doc in docs:
        n = len(doc.text)
        if n < 200:
            train.append(doc)
            continue
        cut = int(n * (1.0 - val_fraction))
        newline = doc.text.rfind("\n", max(0, cut - 2000), cut)
        if newline > 0:
            cut = newline + 1
        train.append(Document(doc.name, doc.text[:cut]))
        val.append(Document(doc.name, doc.text[cut:]))
    if not val:
        raise GlassError(
            "the data is too short to hold out validation text: give at least a few hundred characters"
        )
    return CorpusSplit(train, val)
