"""Tokenizers: text <-> token ids, and the standard `tokenizer.json` file they live in.

Owns three kinds, all behind one `Tokenizer` class:

* ``"bpe"``  - byte-level BPE trained on your text with Hugging Face `tokenizers`
  (GPT-2's pre-tokenizer regex, so a leading space is part of a token: " the").
* ``"char"`` - one token per distinct character seen in training.
* ``"gpt2"`` - GPT-2's own tokenizer, built offline from the files shipped in
  ``glassgpt/assets/gpt2`` (ids equal ``tiktoken.get_encoding("gpt2")``'s).

Special tokens are read from the file: the ``added_tokens`` of ``tokenizer.json`` marked
``"special": true``, whatever their ids and order, so a file with a token added later (or
specials moved) still loads. Only what glassgpt uses is required: ``<|bos|>`` and
``<|eos|>`` for "bpe" and "char", or Llama 3's names for them, ``<|begin_of_text|>`` and
``<|end_of_text|>`` (`BOS_EOS_NAMES`; pad is ``<|pad|>`` if present, else eos);
``<|endoftext|>`` for "gpt2", which has that one special (50256) serving as bos, eos and
pad. A byte-level BPE file whose specials include ``<|endoftext|>`` but no ``<|bos|>``
loads as "gpt2". New tokenizers are trained with ``SPECIAL_TOKENS`` appended after the
learned vocabulary. Added tokens *not* marked special are kept too (their text is their
bytes), but they switch off the tiktoken fast path, which cannot match them in text.

Imported Llama 1/2-family models (Llama 2, TinyLlama, Mistral) bring a SentencePiece-style BPE
file instead (`is_sentencepiece_style`): spaces become "▁" and every text gets one at its start
(the "dummy prefix"), characters outside the vocabulary fall back to byte tokens ``<0xE2>``,
and bos/eos are ``<s>``/``</s>``. It loads as a "bpe" tokenizer: encoding runs on `tokenizers`
(whole texts: cutting them would add a dummy prefix at every cut), and each token's bytes are
its text with "▁" as a space, or the byte of a ``<0xNN>`` token; so decoding a whole text keeps
the dummy prefix's leading space (`tokenizers` strips it), and a continuation's first token
gets the space it stands for.

Encoding semantics: ``encode(text)`` treats special-token text such as ``"<|bos|>"`` in
the input as ordinary characters (tiktoken's ``encode_ordinary``), so user text can never
inject control tokens; pass ``allow_special=True`` to turn such strings into their ids.

Fast path: the file format is Hugging Face's, but for byte-level BPE ("bpe", "gpt2")
encoding goes through a `tiktoken.Encoding` built from the same vocabulary (ranks = token
ids, which for a `tokenizers`-trained BPE are in merge order after the byte alphabet) and
the same regex; the tests check the ids are identical to the `tokenizers` path.
Long texts are cut at places where the regex always has a boundary
(`split_for_encoding`) and encoded on threads. Measured on the built-in corpus
(14.4 MB, 2 CPU cores, 4096-token BPE; shared machine, so +-30%): tiktoken path
~10 MB/s on one thread and ~18 MB/s on two; `tokenizers` path ~1.2 MB/s. GPT-2: tiktoken
~6-9 MB/s on one thread, `tokenizers` ~1 MB/s. If a loaded file cannot be
reproduced exactly by tiktoken (unusual settings), `Tokenizer.fast` is False and the
slower `tokenizers` path is used instead.

"char" encodes with a plain dictionary; a character not seen in training raises
`GlassError` naming it (there is no byte fallback, so ids never silently lose text).
"""

from __future__ import annotations

import json
import lzma
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import tiktoken
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from glassgpt.assets import asset
from glassgpt.atomic import atomic_write_text
from glassgpt.errors import GlassError

SPECIAL_TOKENS = (
    "<|bos|>",
    "<|eos|>",
    "<|pad|>",
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|reserved_0|>",
)
KINDS = ("bpe", "char", "gpt2")
#: GPT-2's pre-tokenizer regex; also what `tokenizers`' ByteLevel pre-tokenizer uses.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_EOT = "<|endoftext|>"
#: The names a "bpe" or "char" file may give its start and end of document: glassgpt's own, then
#: Llama 3's and Llama 1/2's (imported models; the first pair the file has both of is used).
BOS_EOS_NAMES = (("<|bos|>", "<|eos|>"), ("<|begin_of_text|>", "<|end_of_text|>"), ("<s>", "</s>"))
#: SentencePiece's stand-in for a space ("▁", U+2581), and its byte-fallback tokens ("<0x0A>").
SENTENCEPIECE_SPACE = "\u2581"
_BYTE_FALLBACK_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
GPT2_VOCAB_SIZE = 50257
MIN_BPE_VOCAB = 256 + len(SPECIAL_TOKENS) + 1
TOKENIZER_FILE = "tokenizer.json"

# Texts longer than this are cut into pieces of about this many characters and the
# pieces are encoded on threads.
_CHUNK_CHARS = 1 << 20
_MAX_THREADS = 8
# Places where GPT-2's regex always has a boundary, whatever surrounds them: after a
# newline that follows a non-space and precedes a non-space, or before a " " that
# follows a non-space and precedes a non-space. (Python's \s is a superset of the
# Unicode White_Space the Rust regex engines use, so this errs on the safe side.)
_SAFE_SPLIT = re.compile(r"(?<=[^\s]\n)(?=[^\s])|(?<=[^\s])(?= [^\s])")
_CHAR_SPLIT = r"[\s\S]"  # every single character is its own pre-token


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


_BYTE_ENCODER = _bytes_to_unicode()
_BYTE_DECODER = {c: b for b, c in _BYTE_ENCODER.items()}


def split_for_encoding(text: str, chunk_chars: int | None = None) -> list[str]:
    """Cut `text` into pieces of about `chunk_chars` characters that encode independently.

    The cuts are at places where GPT-2's regex always has a token boundary, so for every
    kind of tokenizer here the concatenated ids of the pieces equal the ids of the whole.
    A text with no such place stays in one piece. Default size: about a million characters.
    """
    chunk_chars = chunk_chars or _CHUNK_CHARS
    pieces: list[str] = []
    start = 0
    while len(text) - start > chunk_chars:
        match = _SAFE_SPLIT.search(text, start + chunk_chars)
        if match is None:
            break
        pieces.append(text[start : match.start()])
        start = match.start()
    pieces.append(text[start:])
    return pieces


def _default_threads() -> int:
    return max(1, min(_MAX_THREADS, os.cpu_count() or 1))


def is_sentencepiece_style(config: dict[str, Any]) -> bool:
    """Whether a tokenizer.json is SentencePiece-style BPE (Llama 1/2): byte fallback, or "▁" in
    its normalizer or pre-tokenizer (a byte-level BPE file has neither)."""
    model = config.get("model") or {}
    spaces = json.dumps([config.get("normalizer"), config.get("pre_tokenizer")], ensure_ascii=False)
    return model.get("type") == "BPE" and (bool(model.get("byte_fallback")) or SENTENCEPIECE_SPACE in spaces)


def _resolve_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    return p / TOKENIZER_FILE if p.is_dir() else p


@lru_cache(maxsize=1)
def _gpt2_files() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's encoder.json (token string -> id) and vocab.bpe merges, from the package."""
    folder = asset("gpt2")
    with (folder / "encoder.json.xz").open("rb") as raw:
        encoder = json.loads(lzma.decompress(raw.read()).decode("utf-8"))
    with (folder / "vocab.bpe.xz").open("rb") as raw:
        lines = lzma.decompress(raw.read()).decode("utf-8").split("\n")
    merges = [tuple(line.split(" ")) for line in lines[1:] if line]
    return encoder, merges  # type: ignore[return-value]


class Tokenizer:
    """A tokenizer of one kind ("bpe", "char", "gpt2"); build with the class methods.

    Attributes: `kind`, `vocab_size` (all ids, specials included), `special_ids`
    (special token text -> id, every token the file marks special, in id order), `bos_id`,
    `eos_id`, `pad_id`, and `fast` (True when byte-level BPE encoding runs on tiktoken).
    """

    def __init__(self, hf: HFTokenizer, kind: str, source: str = "the tokenizer") -> None:
        """Wrap a Hugging Face tokenizer; prefer `train_bpe`, `train_char`, `gpt2`, `load`."""
        if kind not in KINDS:
            raise ValueError(f"unknown tokenizer kind {kind!r}")
        self.kind = kind
        self._hf = hf
        self.vocab_size: int = hf.get_vocab_size(with_added_tokens=True)
        config = json.loads(hf.to_str())
        added = hf.get_added_tokens_decoder()  # id -> AddedToken, specials and others
        # Special token text -> id, as the file has them (in id order, wherever they are).
        self.special_ids: dict[str, int] = {
            t.content: i for i, t in sorted(added.items()) if t.special
        }
        self._other_added = {t.content for t in added.values() if not t.special}
        self._sentencepiece = is_sentencepiece_style(config)
        if kind == "gpt2":
            eot = self._require_special(GPT2_EOT, source, "use Tokenizer.gpt2()")
            self.bos_id = self.eos_id = self.pad_id = eot
        else:
            bos, eos = next((pair for pair in BOS_EOS_NAMES if set(pair) <= set(self.special_ids)), BOS_EOS_NAMES[0])
            self.bos_id = self._require_special(bos, source)
            self.eos_id = self._require_special(eos, source)
            # Padding positions are masked out of the loss, so any id does; eos is the usual stand-in.
            self.pad_id = self.special_ids.get("<|pad|>", self.eos_id)
        self._id_bytes = self._build_byte_table(source)
        # Longest first, so that a special whose text starts with another's wins.
        by_length = sorted(self.special_ids, key=len, reverse=True)
        self._special_re = re.compile("|".join(re.escape(s) for s in by_length))
        self._char_ids: dict[str, int] | None = None
        self._fast: tiktoken.Encoding | None = None
        if kind == "char":
            self._char_ids = {
                b.decode("utf-8"): i
                for i, b in enumerate(self._id_bytes)
                if i not in self.special_ids.values()
            }
        else:
            self._fast = self._build_fast_path(config)

    # ----------------------------------------------------------------- construction

    @classmethod
    def train_bpe(
        cls, texts: Iterable[str], vocab_size: int = 4096, show_progress: bool = False
    ) -> Tokenizer:
        """Train byte-level BPE on `texts`; `vocab_size` counts everything, specials included.

        The vocabulary can come out smaller than asked if the text runs out of pairs.
        """
        if not isinstance(vocab_size, int) or vocab_size < MIN_BPE_VOCAB:
            raise GlassError(
                f"BPE vocab size must be at least {MIN_BPE_VOCAB} (256 bytes + "
                f"{len(SPECIAL_TOKENS)} special tokens + 1 merge), got {vocab_size}: pick a larger one"
            )
        seen = {"chars": 0}

        def counted(items: Iterable[str]) -> Iterator[str]:
            for text in items:
                seen["chars"] += len(text)
                yield text

        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size - len(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=[],
            show_progress=show_progress,
        )
        hf.train_from_iterator(counted(texts), trainer=trainer)
        if seen["chars"] == 0:
            raise GlassError("no text to train the tokenizer on: give some non-empty text")
        hf.add_special_tokens(list(SPECIAL_TOKENS))
        return cls(hf, "bpe")

    @classmethod
    def train_char(cls, texts: Iterable[str]) -> Tokenizer:
        """One token per distinct character in `texts` (sorted by code point), then specials."""
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        if not chars:
            raise GlassError("no text to train the tokenizer on: give some non-empty text")
        vocab = {c: i for i, c in enumerate(sorted(chars))}
        hf = HFTokenizer(models.WordLevel(vocab=vocab, unk_token="<|unk|>"))
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(_CHAR_SPLIT), behavior="isolated")
        hf.decoder = decoders.Fuse()
        hf.add_special_tokens(list(SPECIAL_TOKENS))
        return cls(hf, "char")

    @classmethod
    def gpt2(cls) -> Tokenizer:
        """GPT-2's tokenizer (50257 ids), built from the copies shipped in the package."""
        encoder, merges = _gpt2_files()
        return cls._gpt2_style(encoder, merges, "GPT-2's tokenizer")

    @classmethod
    def from_vocab_merges(cls, vocab_file: str | os.PathLike[str], merges_file: str | os.PathLike[str]) -> Tokenizer:
        """A GPT-2-style tokenizer from the vocab.json + merges.txt that `transformers`'
        GPT2Tokenizer saves (the same two files GPT-2's own `gpt2()` is built from)."""
        source = f"tokenizer files {vocab_file} and {merges_file}"
        try:
            encoder = json.loads(Path(vocab_file).read_text(encoding="utf-8"))
            lines = Path(merges_file).read_text(encoding="utf-8").splitlines()
            merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise GlassError(f"cannot read {source} ({err}): save the tokenizer again") from None
        if not isinstance(encoder, dict) or any(len(m) != 2 for m in merges):
            raise GlassError(f"{source} are not GPT-2 vocab/merges files: save the tokenizer again")
        return cls._gpt2_style(encoder, merges, source)  # type: ignore[arg-type]

    @classmethod
    def _gpt2_style(cls, encoder: dict[str, int], merges: list[tuple[str, str]], source: str) -> Tokenizer:
        """Byte-level BPE with GPT-2's settings and its one special token, <|endoftext|>."""
        hf = HFTokenizer(models.BPE(vocab=dict(encoder), merges=list(merges)))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf.decoder = decoders.ByteLevel()
        hf.add_special_tokens([GPT2_EOT])
        return cls(hf, "gpt2", source=source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Load a `tokenizer.json` (or a folder holding one) written by `save`."""
        file = _resolve_file(path)
        fix = "point to a tokenizer.json saved by glassgpt, or train a new tokenizer"
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise GlassError(f"tokenizer file {file} does not exist: {fix}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise GlassError(f"cannot read tokenizer file {file} ({err}): {fix}") from None
        return cls.from_json(text, source=f"tokenizer file {file}")

    @classmethod
    def from_json(cls, text: str, source: str = "the tokenizer") -> Tokenizer:
        """A tokenizer from the text of a `tokenizer.json` (`to_json` gives it back)."""
        fix = "point to a tokenizer.json saved by glassgpt, or train a new tokenizer"
        try:
            config = json.loads(text)
            model_type = config["model"]["type"]
            hf = HFTokenizer.from_str(text)
        except Exception as err:  # tokenizers raises a bare Exception on bad files
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise GlassError(f"{source} is corrupted or not a tokenizer.json ({detail}): {fix}") from None
        if model_type == "WordLevel":
            kind = "char"
        elif model_type == "BPE":
            specials = {t.content for t in hf.get_added_tokens_decoder().values() if t.special}
            # GPT-2's convention (one <|endoftext|> for bos, eos and pad), even with tokens added.
            is_gpt2 = GPT2_EOT in specials and not any(bos in specials for bos, _ in BOS_EOS_NAMES)
            kind = "gpt2" if is_gpt2 else "bpe"
        else:
            raise GlassError(f"{source} has a {model_type} model, which glassgpt does not use: {fix}")
        return cls(hf, kind, source=source)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the standard `tokenizer.json` atomically; a folder gets `tokenizer.json` in it.

        The file loads with `tokenizers.Tokenizer.from_file` and
        `transformers.PreTrainedTokenizerFast(tokenizer_file=...)`.
        """
        file = _resolve_file(path)
        try:
            atomic_write_text(file, self.to_json())
        except OSError as err:
            raise GlassError(
                f"cannot write tokenizer file {file} ({err.strerror or err}): "
                "check the folder exists and is writable"
            ) from None
        return file

    def to_json(self) -> str:
        """The `tokenizer.json` content (deterministic for a given tokenizer)."""
        return self._hf.to_str(pretty=True)

    # ----------------------------------------------------------------- encoding

    @property
    def fast(self) -> bool:
        """True when encoding runs on tiktoken (byte-level BPE kinds)."""
        return self._fast is not None

    @property
    def hf_tokenizer(self) -> HFTokenizer:
        """The underlying `tokenizers.Tokenizer` (treat as read-only)."""
        return self._hf

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """Token ids of `text`; special-token text becomes its id only if `allow_special`."""
        if allow_special:
            ids: list[int] = []
            start = 0
            for match in self._special_re.finditer(text):
                ids += self.encode(text[start : match.start()])
                ids.append(self.special_ids[match.group()])
                start = match.end()
            return ids + self.encode(text[start:])
        if len(text) <= _CHUNK_CHARS:
            return self._encode_pieces([text], 1)[0]
        return self.encode_many([text])[0]

    def encode_many(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]:
        """Token ids of each text (special-token text is ordinary), on `num_threads` threads.

        Long texts are split with `split_for_encoding`, so even one big text uses all threads.
        """
        pieces: list[str] = []
        owners: list[int] = []
        for index, text in enumerate(texts):
            long = len(text) > _CHUNK_CHARS and not self._sentencepiece  # no dummy prefix at a cut
            parts = split_for_encoding(text) if long else [text]
            pieces += parts
            owners += [index] * len(parts)
        encoded = self._encode_pieces(pieces, num_threads or _default_threads())
        if len(pieces) == len(texts):
            return encoded
        out: list[list[int]] = [[] for _ in texts]
        for owner, ids in zip(owners, encoded, strict=True):
            out[owner] += ids
        return out

    def encode_hf(self, text: str, *, allow_special: bool = False) -> list[int]:
        """Token ids through Hugging Face `tokenizers` (the slow reference path)."""
        self._hf.encode_special_tokens = not allow_special
        try:
            return self._hf.encode(text, add_special_tokens=False).ids
        finally:
            self._hf.encode_special_tokens = False

    def _encode_pieces(self, pieces: list[str], num_threads: int) -> list[list[int]]:
        if self._fast is not None:
            if len(pieces) == 1 or num_threads == 1:
                return [self._fast.encode_ordinary(p) for p in pieces]
            return self._fast.encode_ordinary_batch(pieces, num_threads=num_threads)
        if self._char_ids is not None:
            return [self._encode_chars(p) for p in pieces]
        self._hf.encode_special_tokens = True
        try:
            return [e.ids for e in self._hf.encode_batch(pieces, add_special_tokens=False)]
        finally:
            self._hf.encode_special_tokens = False

    def _encode_chars(self, text: str) -> list[int]:
        table = self._char_ids
        assert table is not None
        try:
            return [table[c] for c in text]
        except KeyError:
            unknown = sorted(set(text) - table.keys())
            shown = ", ".join(repr(c) for c in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise GlassError(
                f"the text has {len(unknown)} character(s) the character-level tokenizer "
                f"never saw in training ({shown}{more}): remove them, retrain the char "
                "tokenizer on text that has them, or use a BPE tokenizer"
            ) from None

    # ----------------------------------------------------------------- decoding

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; specials appear as their text, broken UTF-8 as U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The raw bytes of `ids` concatenated (for streaming partial UTF-8)."""
        ids = list(ids)
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = [i for i in ids if not 0 <= i < self.vocab_size]
            raise ValueError(f"token ids out of range 0..{self.vocab_size - 1}: {bad[:5]}")
        table = self._id_bytes
        return b"".join([table[i] for i in ids])

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes of one token (a special token's bytes are its UTF-8 text)."""
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(f"token id {token_id} out of range 0..{self.vocab_size - 1}")
        return self._id_bytes[token_id]

    def token_str(self, token_id: int) -> str:
        """One token for display: its bytes decoded, undecodable bytes as \\xNN escapes."""
        return self.token_bytes(token_id).decode("utf-8", errors="backslashreplace")

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, fast={self.fast})"

    # ----------------------------------------------------------------- internals

    def _require_special(self, token: str, source: str, fix: str | None = None) -> int:
        """The id of special token `token`, or a GlassError naming what the file has instead."""
        if token in self.special_ids:
            return self.special_ids[token]
        have = ", ".join(self.special_ids) or "none"
        fix = fix or (
            f'train the tokenizer with glassgpt, or add {token} to the file\'s "added_tokens" '
            'with "special": true'
        )
        raise GlassError(
            f"{source} has no special token {token} (its special tokens: {have}): {fix}"
        )

    def _build_byte_table(self, source: str) -> list[bytes]:
        """Raw bytes of every id; checks the ids are exactly 0..vocab_size-1."""
        table: list[bytes | None] = [None] * self.vocab_size
        # Added tokens (special or not) are stored as plain text, not in the byte alphabet.
        plain_text = set(self.special_ids) | self._other_added
        for token, token_id in self._hf.get_vocab(with_added_tokens=True).items():
            if not 0 <= token_id < self.vocab_size:
                raise GlassError(f"{source} has a token id {token_id} past its vocab size")
            if token in plain_text or self.kind == "char":
                table[token_id] = token.encode("utf-8")
                continue
            if self._sentencepiece:
                byte = _BYTE_FALLBACK_TOKEN.fullmatch(token)
                table[token_id] = bytes([int(byte.group(1), 16)]) if byte else \
                    token.replace(SENTENCEPIECE_SPACE, " ").encode("utf-8")
                continue
            try:
                table[token_id] = bytes(_BYTE_DECODER[c] for c in token)
            except KeyError:
                raise GlassError(
                    f"{source} is not a byte-level BPE tokenizer (token {token!r}): "
                    "train the tokenizer with glassgpt"
                ) from None
        if any(b is None for b in table):
            raise GlassError(f"{source} has gaps in its token ids: train the tokenizer again")
        return table  # type: ignore[return-value]

    def _build_fast_path(self, config: dict[str, Any]) -> tiktoken.Encoding | None:
        """A tiktoken Encoding giving the same ids as `tokenizers`, or None if it cannot.

        tiktoken merges the adjacent pair whose *concatenation* has the lowest rank; that
        reproduces BPE merge priority when ranks are token ids and every merged token's id
        follows merge order, as `tokenizers`' trainer assigns them. Anything else (other
        normalisation, pre-tokenisation or BPE options) keeps the `tokenizers` path.
        """
        model = config.get("model") or {}
        pre = config.get("pre_tokenizer") or {}
        if (
            self._other_added  # `tokenizers` cuts these out of any text; tiktoken cannot
            or config.get("normalizer") is not None
            or pre.get("type") != "ByteLevel"
            or pre.get("add_prefix_space")
            or not pre.get("use_regex", True)
            or model.get("type") != "BPE"
            or model.get("dropout") is not None
            or model.get("continuing_subword_prefix")
            or model.get("end_of_word_suffix")
            or model.get("byte_fallback")
        ):
            return None
        vocab: dict[str, int] = model.get("vocab") or {}
        merged_ids = []
        for merge in model.get("merges") or []:
            left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
            merged_ids.append(vocab.get(left + right, -1))
        if -1 in merged_ids or any(a >= b for a, b in pairwise(merged_ids)):
            return None
        specials = set(self.special_ids.values())
        ranks = {b: i for i, b in enumerate(self._id_bytes) if i not in specials}
        made_by_merges = set(merged_ids)
        if any(len(b) != 1 and i not in made_by_merges for b, i in ranks.items()):
            return None
        if len([b for b in ranks if len(b) == 1]) != 256:
            return None
        return tiktoken.Encoding(
            f"glassgpt-{self.kind}-{self.vocab_size}",
            pat_str=GPT2_PATTERN,
            mergeable_ranks=ranks,
            special_tokens=dict(self.special_ids),
            explicit_n_vocab=self.vocab_size,
        )
