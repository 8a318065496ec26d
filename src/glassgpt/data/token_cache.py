"""The token cache: documents encoded once into one flat array of ids, kept on disk.

`encode_documents` turns documents into ``[bos] + ids(doc1) + [eos] + [bos] + ids(doc2)
+ [eos] ...``: bos marks where each document starts (generation starts from it too) and
eos where it ends, so a model learns to stop. When bos and eos are one token (GPT-2's
``<|endoftext|>``) a single one stands between documents, as in GPT-2's own training data:
``[eot] + ids(doc1) + [eot] + ids(doc2) + [eot]``; every document is still preceded and
followed by it, and there is never a doubled separator. Empty documents are left out (there
is nothing in them to learn, and with one shared separator they would double it). Special
tokens stand for no text, so `num_bytes` is the UTF-8 size of the documents alone.

Given a cache folder, `encode_documents` stores the array as ``<key>.bin`` (raw ids) plus
``<key>.json`` (dtype, length, byte count), where the key is a sha256 of `CACHE_FORMAT`, the
tokenizer file and every document's name and text. A later call with
the same inputs maps the file with `np.memmap` instead of tokenizing again. Files are
written atomically (temporary file, fsync, rename), so an interrupted run never leaves a
half-written cache entry that looks valid.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from glassgpt.atomic import atomic_write, atomic_write_text
from glassgpt.data.corpus import Document
from glassgpt.errors import GlassError
from glassgpt.tokenizer import Tokenizer, split_for_encoding

# v2: documents end with eos (v1 had only bos); older entries get a new key, so are rebuilt.
CACHE_FORMAT = "glassgpt-tokens-v2"
# Pieces handed to the tokenizer per batch (each about a million characters at most), so
# the progress bar moves and the threads stay busy.
_PIECES_PER_BATCH = 8


@dataclass(frozen=True)
class TokenArray:
    """Token ids of some documents, with what is needed for bits-per-byte.

    `ids` is 1-D (a read-only `np.memmap` when it came from the cache), `num_bytes` is
    the UTF-8 size of the encoded text (special tokens count 0 bytes), `num_docs` the number
    of documents in the stream (the non-empty ones).
    """

    ids: np.ndarray
    num_bytes: int
    num_docs: int

    def __len__(self) -> int:
        return len(self.ids)


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id: uint16 up to 65536 ids, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def cache_key(tokenizer: Tokenizer, docs: list[Document]) -> str:
    """sha256 of the cache format, the tokenizer file and each document's name and text."""
    digest = hashlib.sha256()

    def add(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    add(CACHE_FORMAT.encode())
    add(tokenizer.to_json().encode("utf-8"))
    for doc in docs:
        add(doc.name.encode("utf-8", errors="surrogatepass"))
        add(doc.text.encode("utf-8", errors="surrogatepass"))
    return digest.hexdigest()


def encode_documents(
    tokenizer: Tokenizer,
    docs: list[Document],
    cache_dir: Path | None = None,
    show_progress: bool = False,
) -> TokenArray:
    """Encode `docs` as ``[bos] + ids(doc) + [eos]`` each, concatenated; cached in `cache_dir`.

    With one token for bos and eos (GPT-2), a single one separates documents (module docstring).
    No caching when `cache_dir` is None.
    """
    if cache_dir is None:
        return _encode(tokenizer, docs, show_progress)
    cache_dir = Path(cache_dir).expanduser()
    key = cache_key(tokenizer, docs)
    bin_path, meta_path = cache_dir / f"{key}.bin", cache_dir / f"{key}.json"
    cached = _load_cached(bin_path, meta_path, token_dtype(tokenizer.vocab_size))
    if cached is not None:
        return cached
    tokens = _encode(tokenizer, docs, show_progress)
    meta = {
        "format": CACHE_FORMAT,
        "dtype": tokens.ids.dtype.name,
        "length": len(tokens.ids),
        "num_bytes": tokens.num_bytes,
        "num_docs": tokens.num_docs,
    }
    try:
        # The metadata goes last: a cache entry counts only once both files are complete.
        atomic_write(bin_path, tokens.ids.tofile)
        atomic_write_text(meta_path, json.dumps(meta, indent=2))
    except OSError as err:
        raise GlassError(
            f"cannot write the token cache in {cache_dir} ({err.strerror or err}): "
            "give a writable cache folder"
        ) from None
    return TokenArray(
        _map(bin_path, tokens.ids.dtype, len(tokens.ids)), tokens.num_bytes, tokens.num_docs
    )


def _encode(tokenizer: Tokenizer, docs: list[Document], show_progress: bool) -> TokenArray:
    dtype = token_dtype(tokenizer.vocab_size)
    bos = np.array([tokenizer.bos_id], dtype=dtype)
    eos = np.array([tokenizer.eos_id], dtype=dtype)
    # GPT-2: the eos closing one document also opens the next, so only the first gets a bos.
    shared = tokenizer.bos_id == tokenizer.eos_id
    texts = [doc.text for doc in docs if doc.text]
    # (document index, piece, is it the document's last piece) for every piece, in order.
    pieces: list[tuple[int, str, bool]] = []
    for index, text in enumerate(texts):
        split = split_for_encoding(text)
        pieces += [(index, piece, n == len(split) - 1) for n, piece in enumerate(split)]
    num_bytes = sum(len(text.encode("utf-8")) for text in texts)
    parts: list[np.ndarray] = [bos] if shared and texts else []
    started: set[int] = set()
    with tqdm(
        total=num_bytes,
        unit="B",
        unit_scale=True,
        desc="tokenizing",
        disable=not show_progress,
    ) as bar:
        for at in range(0, len(pieces), _PIECES_PER_BATCH):
            batch = pieces[at : at + _PIECES_PER_BATCH]
            encoded = tokenizer.encode_many([piece for _, piece, _ in batch])
            for (index, piece, last), ids in zip(batch, encoded, strict=True):
                if index not in started:
                    started.add(index)
                    if not shared:
                        parts.append(bos)
                parts.append(np.asarray(ids, dtype=dtype))
                if last:
                    parts.append(eos)
                bar.update(len(piece.encode("utf-8")))
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    return TokenArray(ids, num_bytes, len(texts))


def _load_cached(bin_path: Path, meta_path: Path, dtype: np.dtype) -> TokenArray | None:
    """The cached array, or None if absent, stale or damaged (it is then rebuilt)."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        length = int(meta["length"])
        ok = (
            meta.get("format") == CACHE_FORMAT
            and meta["dtype"] == dtype.name
            and bin_path.stat().st_size == length * dtype.itemsize
        )
        if not ok:
            return None
        return TokenArray(
            _map(bin_path, dtype, length), int(meta["num_bytes"]), int(meta["num_docs"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _map(path: Path, dtype: np.dtype, length: int) -> np.ndarray:
    if length == 0:  # an empty file cannot be memory-mapped
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(length,))

