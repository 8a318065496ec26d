"""The token cache: documents encoded once into one flat array of ids, kept on disk.

`encode_documents` turns documents into ``[bos] + ids(doc1) + [bos] + ids(doc2) ...``
(a bos id marks where each document starts) and, given a cache folder, stores the array
as ``<key>.bin`` (raw ids) plus ``<key>.json`` (dtype, length, byte count), where the key
is a sha256 of the tokenizer file and every document's name and text. A later call with
the same inputs maps the file with `np.memmap` instead of tokenizing again. Files are
written atomically (temporary file, fsync, rename), so an interrupted run never leaves a
half-written cache entry that looks valid.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from glassgpt.atomic import atomic_write, atomic_write_text
from glassgpt.data.corpus import Document
from glassgpt.errors import GlassError
from glassgpt.tokenizer import Tokenizer, split_for_encoding

CACHE_FORMAT = "glassgpt-tokens-v1"
# Pieces handed to the tokenizer per batch (each about a million characters at most), so
# the progress bar moves and the threads stay busy.
_PIECES_PER_BATCH = 8


@dataclass(frozen=True)
class TokenArray:
    """Token ids of some documents, with what is needed for bits-per-byte.

    `ids` is 1-D (a read-only `np.memmap` when it came from the cache), `num_bytes` is
    the UTF-8 size of the encoded text, `num_docs` the number of documents (and bos ids).
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
    """Encode `docs` as ``[bos] + ids(doc)`` each, concatenated; cached in `cache_dir` if given."""
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
    # (document index, piece) for every piece of every document, in order.
    pieces = [(i, piece) for i, doc in enumerate(docs) for piece in split_for_encoding(doc.text)]
    num_bytes = sum(len(doc.text.encode("utf-8")) for doc in docs)
    parts: list[np.ndarray] = []
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
            encoded = tokenizer.encode_many([piece for _, piece in batch])
            for (doc_index, piece), ids in zip(batch, encoded, strict=True):
                if doc_index not in started:
                    started.add(doc_index)
                    parts.append(bos)
                parts.append(np.asarray(ids, dtype=dtype))
                bar.update(len(piece.encode("utf-8")))
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    return TokenArray(ids, num_bytes, len(docs))


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


def token_windows(
    ids: np.ndarray, starts: Sequence[int], context: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows ids[s : s + context + 1] as int64 inputs x (B, T) and next-token targets y (B, T)."""
    rows = np.stack([ids[s : s + context + 1] for s in starts]).astype(np.int64)
    batch = torch.from_numpy(rows).to(device)
    return batch[:, :-1], batch[:, 1:]
