"""Files shipped inside the package, so nothing is downloaded at run time: the built-in corpus
(`corpus/`, xz-compressed, with PROVENANCE.md) and GPT-2's tokenizer files (`gpt2/`)."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable


def asset(*parts: str) -> Traversable:
    """A shipped file or folder, e.g. ``asset("gpt2", "vocab.bpe.xz")``."""
    return resources.files(__name__).joinpath(*parts)
