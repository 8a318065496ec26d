"""The numbers behind every `glassgpt look` view, computed from a model and its tokenizer.

Each function returns a small frozen dataclass of plain values (ints, floats, strings, tuples
and float32 numpy arrays): no printing, no drawing, no torch tensors. `to_jsonable` turns any
of them into JSON-ready data (fields marked `json=False` in their metadata are left out: they
are large arrays, such as the whole-vocabulary probabilities, that the JSON summarises).

Conventions shared by all views:

* A text is read as the engine reads a prompt: the start token (bos) first, then the text's
  tokens. It must be non-empty and fit the model's context (`encode_text`).
* A word is looked up as the tokenizer sees it inside running text: with a leading space
  (" bank"). A word split into several tokens is kept: embeddings use the mean of its token
  vectors, `context` uses its last token (the first one to have seen the whole word).
* Layers, heads and positions are numbered from 0; position 0 is the start token.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from glassgpt.engine import Engine, next_token_probabilities
from glassgpt.errors import GlassError
from glassgpt.explain.look.trace import Trace, trace
from glassgpt.model import GPT
from glassgpt.tokenizer import Tokenizer

TEMPERATURES = (0.0, 0.5, 1.0, 1.5)
NO_JSON = {"json": False}
# The embeddings view's examples when it is asked for nothing in particular.
DEFAULT_MAP_WORDS = ("king", "queen", "lord", "god", "man", "woman", "father", "mother", "son",
                     "daughter", "sea", "ship", "whale", "water", "love", "heart", "death", "life")
DEFAULT_SENTENCES = (
    "The king went to war with his army.",
    "The queen sent her soldiers to battle.",
    "The whale swam deep in the sea.",
    "She loved him with all her heart.",
)


# ----------------------------------------------------------------------------- shared pieces


@dataclass(frozen=True)
class ModelInfo:
    """Which model a view ran on, for its header line."""

    path: str
    preset: str
    step: int
    parameters: int
    n_layer: int
    n_head: int
    n_kv_head: int
    d_model: int
    vocab_size: int
    context_length: int
    tokenizer: str


def model_info(
    model: GPT, tokenizer: Tokenizer, path: str | Path, preset: str, step: int
) -> ModelInfo:
    c = model.config
    return ModelInfo(
        path=str(path),
        preset=preset,
        step=step,
        parameters=model.num_parameters(),
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_kv_head=c.n_kv_head,
        d_model=c.d_model,
        vocab_size=c.vocab_size,
        context_length=c.context_length,
        tokenizer=tokenizer.kind,
    )


def encode_text(tokenizer: Tokenizer, text: str, context: int) -> list[int]:
    """bos + the text's tokens, or a GlassError if the text is empty or longer than the context."""
    if not text or not text.strip():
        raise GlassError('the text is empty: give some text to look at, e.g. "The Lord is my"')
    ids = [tokenizer.bos_id, *tokenizer.encode(text)]
    if len(ids) > context:
        raise GlassError(
            f"text is {len(ids)} tokens (the start token included), the model's context is "
            f"{context}: shorten it"
        )
    return ids


def _check_index(name: str, value: int, count: int, allow_negative: bool = False) -> int:
    """`value` as an index into `count` items, or a GlassError naming the valid range."""
    low = -count if allow_negative else 0
    if not low <= value < count:
        extra = f" (or -1..-{count} from the end)" if allow_negative else ""
        raise GlassError(f"{name} {value} does not exist: valid {name}s are 0..{count - 1}{extra}")
    return value % count


def _special_ids(tokenizer: Tokenizer) -> set[int]:
    return set(tokenizer.special_ids.values())


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy().astype(np.float32)


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Project (N, D) points on their two main directions: (N, 2) and the variance share of each.

    Signs are fixed (each axis's largest coordinate is positive) so the picture is stable.
    """
    x = np.asarray(points, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    if x.shape[0] < 2 or not np.any(x):
        return np.zeros((x.shape[0], 2), dtype=np.float32), (0.0, 0.0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    coords = u * s
    out = np.zeros((x.shape[0], 2))
    k = min(2, coords.shape[1])
    out[:, :k] = coords[:, :k]
    for axis in range(2):
        column = out[:, axis]
        if column[np.argmax(np.abs(column))] < 0:
            out[:, axis] = -column
    total = float((s**2).sum())
    shares = [float(s[i] ** 2 / total) if i < len(s) and total > 0 else 0.0 for i in range(2)]
    return out.astype(np.float32), (shares[0], shares[1])


def to_jsonable(value: Any) -> Any:
    """A view (or anything inside one) as JSON-ready dicts, lists, numbers and strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.metadata.get("json", True)
        }
    if isinstance(value, np.ndarray):
        return np.round(value.astype(np.float64), 6).tolist()
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.floating, float)):
        return round(float(value), 6) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def view_json(view: str, info: Any, data: Any) -> dict[str, Any]:
    """A view as JSON: what `glassgpt look VIEW --json` prints and what the server answers."""
    return {"view": view, "model": to_jsonable(info), "data": to_jsonable(data)}


# ----------------------------------------------------------------------------- words


@dataclass(frozen=True)
class WordTokens:
    """A word as the tokenizer sees it in running text: the text looked up and its token(s)."""

    word: str
    lookup: str  # the text encoded, usually " word"
    ids: tuple[int, ...]
    pieces: tuple[str, ...]

    @property
    def split(self) -> bool:
        return len(self.ids) > 1


def word_tokens(tokenizer: Tokenizer, word: str, leading_space: bool = True) -> WordTokens:
    """The token(s) of `word` inside text (" word"); a GlassError if it cannot be encoded."""
    word = word.strip()
    if not word:
        raise GlassError("a word is empty: give a word, e.g. --word bank")
    lookup = " " + word if leading_space else word
    try:
        ids = tokenizer.encode(lookup)
    except GlassError as err:
        raise GlassError(f"unknown word {word!r}: {err}") from None
    if not ids:
        raise GlassError(f"unknown word {word!r}: it encodes to no tokens")
    return WordTokens(word, lookup, tuple(ids), tuple(tokenizer.token_str(i) for i in ids))


def _embedding_matrix(model: GPT) -> torch.Tensor:
    return model.embed.weight.detach().float()


def word_vector(model: GPT, word: WordTokens) -> torch.Tensor:
    """The input embedding of a word: the mean of its token vectors (one token: that vector)."""
    return _embedding_matrix(model)[list(word.ids)].mean(dim=0)


# ----------------------------------------------------------------------------- next


@dataclass(frozen=True)
class NextRow:
    """One candidate next token, by rank (1 = most likely) at temperature 1."""

    rank: int
    id: int
    token: str
    probability: float
    cumulative: float


@dataclass(frozen=True)
class TemperatureBars:
    """The probabilities of the same top tokens at one temperature, and what is left for the rest."""

    temperature: float
    probabilities: tuple[float, ...]
    rest: float


@dataclass(frozen=True)
class NextTable:
    """The ranked next-token table after `text`, and how temperature reshapes it."""

    text: str
    ids: tuple[int, ...]
    rows: tuple[NextRow, ...]
    temperatures: tuple[TemperatureBars, ...]
    entropy_bits: float  # of the whole distribution at temperature 1
    vocab_size: int


def next_table(
    model: GPT,
    tokenizer: Tokenizer,
    ids: list[int],
    top: int = 10,
    temperatures: tuple[float, ...] = TEMPERATURES,
    top_k: int = 0,
    top_p: float = 1.0,
) -> NextTable:
    """The `top` most likely next tokens after `ids` (bos first), with cumulative probability.

    The bars give the same tokens' probabilities at each temperature, after `top_k` / `top_p`
    filtering as generation does it (the rows themselves are always at temperature 1, unfiltered).
    """
    if top < 1:
        raise GlassError(f"--top must be at least 1, got {top}")
    engine = Engine(model, tokenizer)
    logits = engine.next_token_logits(ids)
    probs = next_token_probabilities(logits[None], 1.0)[0]
    top = min(top, probs.numel())
    values, order = torch.sort(probs, descending=True, stable=True)
    values, order = values[:top], order[:top]
    cumulative = values.double().cumsum(0)
    rows = tuple(
        NextRow(r + 1, int(i), tokenizer.token_str(int(i)), float(p), float(c))
        for r, (i, p, c) in enumerate(
            zip(order.tolist(), values.tolist(), cumulative.tolist(), strict=True)
        )
    )
    bars = []
    for t in temperatures:
        if t < 0:
            raise GlassError(f"temperatures must be >= 0, got {t}")
        p_t = next_token_probabilities(logits[None], t, top_k, top_p)[0]
        chosen = p_t[order]
        bars.append(
            TemperatureBars(
                float(t),
                tuple(float(x) for x in chosen.tolist()),
                max(0.0, float(1.0 - chosen.double().sum())),
            )
        )
    nonzero = probs[probs > 0].double()
    entropy = float(-(nonzero * nonzero.log2()).sum())
    text = tokenizer.decode([i for i in ids if i not in _special_ids(tokenizer)])
    return NextTable(text, tuple(ids), rows, tuple(bars), entropy, int(probs.numel()))


# ----------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class TokenPiece:
    id: int
    text: str  # the token's text (bytes that are part of a character shown as \xNN)
    chars: int  # whole characters the token's bytes hold
    bytes: int


@dataclass(frozen=True)
class TokenSplit:
    """A text split by one tokenizer."""

    name: str
    kind: str
    vocab_size: int
    text_chars: int
    pieces: tuple[TokenPiece, ...]

    @property
    def chars_per_token(self) -> float:
        return self.text_chars / max(1, len(self.pieces))


def split_text(tokenizer: Tokenizer, text: str, name: str) -> TokenSplit:
    """`text` as `tokenizer` splits it: ids and the piece of text each stands for."""
    if not text:
        raise GlassError("the text is empty: give some text to split into tokens")
    ids = tokenizer.encode(text)
    pieces = []
    for i in ids:
        raw = tokenizer.token_bytes(i)
        pieces.append(
            TokenPiece(i, tokenizer.token_str(i), len(raw.decode("utf-8", "ignore")), len(raw))
        )
    return TokenSplit(name, tokenizer.kind, tokenizer.vocab_size, len(text), tuple(pieces))


@dataclass(frozen=True)
class TokensView:
    text: str
    splits: tuple[TokenSplit, ...]


def tokens_view(text: str, tokenizers: list[tuple[str, Tokenizer]]) -> TokensView:
    """The same text split by each named tokenizer (ours and GPT-2's, side by side)."""
    return TokensView(text, tuple(split_text(tok, text, name) for name, tok in tokenizers))


# ----------------------------------------------------------------------------- embeddings


@dataclass(frozen=True)
class Neighbour:
    id: int
    token: str
    similarity: float  # cosine similarity, -1..1


@dataclass(frozen=True)
class Neighbours:
    """The vocabulary tokens whose input embeddings point most nearly the way `word`'s does."""

    word: WordTokens
    neighbours: tuple[Neighbour, ...]


def _cosine_to_vocab(model: GPT, vector: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(_embedding_matrix(model), vector[None], dim=-1)  # (V,)


def _ranked(
    tokenizer: Tokenizer, scores: torch.Tensor, exclude: set[int], top: int
) -> tuple[Neighbour, ...]:
    scores = scores.clone()
    if exclude:
        scores[list(exclude)] = float("-inf")
    values, order = torch.sort(scores, descending=True, stable=True)
    count = min(top, scores.numel() - len(exclude))
    return tuple(
        Neighbour(int(i), tokenizer.token_str(int(i)), float(v))
        for i, v in zip(order[:count].tolist(), values[:count].tolist(), strict=True)
    )


def nearest_neighbours(model: GPT, tokenizer: Tokenizer, word: str, top: int = 10) -> Neighbours:
    """Nearest tokens by cosine similarity over the whole input embedding matrix.

    The word's own token(s) and special tokens are left out; a split word uses its mean vector.
    """
    wt = word_tokens(tokenizer, word)
    scores = _cosine_to_vocab(model, word_vector(model, wt))
    return Neighbours(wt, _ranked(tokenizer, scores, set(wt.ids) | _special_ids(tokenizer), top))


@dataclass(frozen=True)
class Analogy:
    """a : b :: c : ?, answered by the tokens nearest to b - a + c (a, b and c left out)."""

    a: WordTokens
    b: WordTokens
    c: WordTokens
    candidates: tuple[Neighbour, ...]
    expect: WordTokens | None
    expect_rank: int | None  # rank of the expected word among all candidates (1 = top)
    expect_score: float | None
    baseline_rank: int | None  # its rank by similarity to c alone: did the arithmetic help?
    candidates_total: int


def _rank_of(scores: torch.Tensor, exclude: set[int], target: float) -> int:
    keep = torch.ones_like(scores, dtype=torch.bool)
    if exclude:
        keep[list(exclude)] = False
    return int((scores[keep] > target).sum()) + 1


def analogy(
    model: GPT,
    tokenizer: Tokenizer,
    a: str,
    b: str,
    c: str,
    expect: str | None = None,
    top: int = 5,
) -> Analogy:
    wa, wb, wc = (word_tokens(tokenizer, w) for w in (a, b, c))
    vector = word_vector(model, wb) - word_vector(model, wa) + word_vector(model, wc)
    scores = _cosine_to_vocab(model, vector)
    exclude = set(wa.ids) | set(wb.ids) | set(wc.ids) | _special_ids(tokenizer)
    candidates = _ranked(tokenizer, scores, exclude, top)
    we = rank = score = baseline = None
    if expect is not None:
        we = word_tokens(tokenizer, expect)
        target = word_vector(model, we)
        score = float(F.cosine_similarity(vector, target, dim=0))
        rank = _rank_of(scores, exclude | set(we.ids), score)
        base_scores = _cosine_to_vocab(model, word_vector(model, wc))
        base_exclude = set(wc.ids) | set(we.ids) | _special_ids(tokenizer)
        base_score = float(F.cosine_similarity(word_vector(model, wc), target, dim=0))
        baseline = _rank_of(base_scores, base_exclude, base_score)
    total = scores.numel() - len(exclude)
    return Analogy(wa, wb, wc, candidates, we, rank, score, baseline, total)


@dataclass(frozen=True)
class WordMap:
    """Words' input embeddings projected to 2-D by PCA."""

    words: tuple[WordTokens, ...]
    points: np.ndarray  # (N, 2)
    explained: tuple[float, float]  # share of the words' variance along each axis


def word_map(model: GPT, tokenizer: Tokenizer, words: list[str]) -> WordMap:
    if len(words) < 3:
        raise GlassError(f"a map needs at least 3 words, got {len(words)}")
    wts = tuple(word_tokens(tokenizer, w) for w in words)
    vectors = torch.stack([word_vector(model, w) for w in wts])
    points, explained = pca_2d(_np(vectors))
    return WordMap(wts, points, explained)


@dataclass(frozen=True)
class SentenceSimilarity:
    """Sentence embeddings (mean final hidden state over the sentence's tokens) compared."""

    sentences: tuple[str, ...]
    tokens: tuple[int, ...]  # tokens per sentence
    matrix: np.ndarray  # (N, N) cosine similarities


def sentence_similarity(
    model: GPT, tokenizer: Tokenizer, sentences: list[str]
) -> SentenceSimilarity:
    """Each sentence's embedding is the mean, over its tokens (not the start token), of the
    final hidden state after the final norm; the matrix holds their cosine similarities."""
    if len(sentences) < 2:
        raise GlassError(f"comparing sentences needs at least 2, got {len(sentences)}")
    vectors, counts = [], []
    for s in sentences:
        ids = encode_text(tokenizer, s, model.config.context_length)
        vectors.append(trace(model, ids).final_hidden[1:].mean(dim=0))
        counts.append(len(ids) - 1)
    v = F.normalize(torch.stack(vectors), dim=-1)
    return SentenceSimilarity(tuple(sentences), tuple(counts), _np(v @ v.T))


@dataclass(frozen=True)
class EmbeddingsView:
    near: tuple[Neighbours, ...]
    analogy: Analogy | None
    word_map: WordMap | None
    sentences: SentenceSimilarity | None
    parameters: int


def embeddings_view(
    model: GPT,
    tokenizer: Tokenizer,
    near: list[str] | None = None,
    analogy_words: list[str] | None = None,
    expect: str | None = None,
    map_words: list[str] | None = None,
    sentences: list[str] | None = None,
    top: int = 10,
) -> EmbeddingsView:
    """The parts asked for; asked for none, every part on example words (king, man : woman ::
    king : queen, `DEFAULT_MAP_WORDS`, `DEFAULT_SENTENCES`)."""
    if top < 1:
        raise GlassError(f"--top must be at least 1, got {top}")
    if analogy_words is not None and len(analogy_words) != 3:
        raise GlassError(f"an analogy takes 3 words (A : B :: C : ?), got {len(analogy_words)}")
    everything = not (near or analogy_words or map_words or sentences)
    if everything:
        near, analogy_words, expect = ["king"], ["man", "woman", "king"], expect or "queen"
        map_words, sentences = list(DEFAULT_MAP_WORDS), list(DEFAULT_SENTENCES)
    return EmbeddingsView(
        near=tuple(nearest_neighbours(model, tokenizer, w, top) for w in near or ()),
        analogy=analogy(model, tokenizer, *analogy_words, expect=expect) if analogy_words else None,
        word_map=word_map(model, tokenizer, map_words) if map_words else None,
        sentences=sentence_similarity(model, tokenizer, sentences) if sentences else None,
        parameters=model.num_parameters(),
    )


# ----------------------------------------------------------------------------- attention


@dataclass(frozen=True)
class FocusTarget:
    position: int
    token: str
    weight: float


@dataclass(frozen=True)
class HeadFocus:
    """Where one head looks from the chosen position: the positions with the largest weights."""

    layer: int
    head: int
    targets: tuple[FocusTarget, ...]


@dataclass(frozen=True)
class AttentionView:
    tokens: tuple[str, ...]  # position 0 is the start token
    ids: tuple[int, ...]
    weights: np.ndarray  # (L, H, T, T): row t = how position t spreads its attention over 0..t
    layers: tuple[int, ...]  # the layers shown
    heads: tuple[int, ...]  # the heads shown
    position: int
    focus: tuple[HeadFocus, ...]


def attention_view(
    model: GPT,
    tokenizer: Tokenizer,
    ids: list[int],
    layer: int | None = None,
    head: int | None = None,
    position: int = -1,
    top: int = 3,
) -> AttentionView:
    c = model.config
    layers = (
        (_check_index("layer", layer, c.n_layer),) if layer is not None else tuple(range(c.n_layer))
    )
    heads = (_check_index("head", head, c.n_head),) if head is not None else tuple(range(c.n_head))
    pos = _check_index("position", position, len(ids), allow_negative=True)
    weights = _np(trace(model, ids).attention)  # (L, H, T, T)
    tokens = tuple(tokenizer.token_str(i) for i in ids)
    focus = []
    for li in layers:
        for hi in heads:
            row = weights[li, hi, pos, : pos + 1]
            order = np.argsort(-row, kind="stable")[: min(top, pos + 1)]
            focus.append(
                HeadFocus(
                    li, hi, tuple(FocusTarget(int(p), tokens[p], float(row[p])) for p in order)
                )
            )
    return AttentionView(tokens, tuple(ids), weights, layers, heads, pos, tuple(focus))


# ----------------------------------------------------------------------------- context


def depth_names(n_layer: int) -> tuple[str, ...]:
    return ("embedding", *(f"block {i}" for i in range(n_layer)), "final norm")


def _depth_states(t: Trace) -> torch.Tensor:
    """(L + 2, T, D): embedding, after each block, after the final norm."""
    return torch.cat([t.residual_stream(), t.final_hidden[None]])


def _find(sequence: tuple[int, ...], part: tuple[int, ...]) -> int:
    """Index of the last token of the first occurrence of `part` in `sequence`, or -1."""
    n = len(part)
    for start in range(len(sequence) - n + 1):
        if sequence[start : start + n] == part:
            return start + n - 1
    return -1


def _locate(tokenizer: Tokenizer, ids: tuple[int, ...], word: str) -> tuple[WordTokens, int] | None:
    """Where `word` is in `ids` (its last token), trying " word" then "word" (text start)."""
    for leading_space in (True, False):
        wt = word_tokens(tokenizer, word, leading_space)
        found = _find(ids, wt.ids)
        if found >= 0:
            return wt, found
    return None


@dataclass(frozen=True)
class TowardsCurve:
    """The word's similarity, at every depth and in each sentence, to a context word's vector."""

    word: str
    source: str  # where that context word's vectors come from: "sentence 1", "alone", ...
    similarity: np.ndarray  # (sentences, depths)


@dataclass(frozen=True)
class ContextView:
    word: WordTokens
    sentences: tuple[str, ...]
    positions: tuple[int, ...]  # the token used in each sentence (0 = start token)
    tokens: tuple[tuple[str, ...], ...]  # each sentence's tokens
    depths: tuple[str, ...]
    between: np.ndarray  # (depths,) cosine of the word's vectors in sentence 1 vs sentence 2
    towards: tuple[TowardsCurve, ...]
    notes: tuple[str, ...]


def context_view(
    model: GPT,
    tokenizer: Tokenizer,
    sentences: list[str],
    word: str,
    towards: list[str] | None = None,
) -> ContextView:
    """How one word's vector differs between two sentences, depth by depth.

    The word's vector at each depth is its last token's residual stream (embedding, after each
    block, after the final norm). A context word's vectors come from the first sentence that
    has it, at the same depths; a context word in neither sentence is read alone (bos + word).
    """
    if len(sentences) != 2:
        raise GlassError(f"context compares exactly 2 sentences, got {len(sentences)}")
    word_tokens(tokenizer, word)  # a clear error for an empty or unencodable word
    encoded = [tuple(encode_text(tokenizer, s, model.config.context_length)) for s in sentences]
    traces = [trace(model, list(ids)) for ids in encoded]
    states = [_depth_states(t) for t in traces]  # each (depths, T, D)
    found, positions = None, []
    for n, (ids, s) in enumerate(zip(encoded, sentences, strict=True), start=1):
        located = _locate(tokenizer, ids, word)
        if located is None:
            raise GlassError(
                f"the word {word!r} is not in sentence {n} ({s!r}) as the tokenizer splits it: "
                "give a word that appears in both sentences"
            )
        found = found or located[0]
        positions.append(located[1])
    assert found is not None
    vectors = [st[:, p] for st, p in zip(states, positions, strict=True)]  # each (depths, D)
    between = _np(F.cosine_similarity(vectors[0], vectors[1], dim=-1))
    notes = []
    if found.split:
        pieces = " + ".join(repr(p) for p in found.pieces)
        notes.append(f"{word!r} is {len(found.ids)} tokens here ({pieces}): using its last token")
    curves = []
    for other in towards or []:
        source, reference = None, None
        for n, ids in enumerate(encoded):
            located = _locate(tokenizer, ids, other)
            if located is not None:
                source, where = f"sentence {n + 1}", located[1]
                reference = states[n][:, where]  # (depths, D)
                if where > positions[n]:
                    notes.append(
                        f"in sentence {n + 1} {other!r} comes after {word!r}: a causal model "
                        f"cannot let {word!r} see it"
                    )
                break
        if reference is None:
            wt = word_tokens(tokenizer, other)
            alone = [tokenizer.bos_id, *wt.ids]
            reference = _depth_states(trace(model, alone))[:, -1]
            source = "alone (in neither sentence)"
        sims = torch.stack([F.cosine_similarity(v, reference, dim=-1) for v in vectors])
        curves.append(TowardsCurve(other, str(source), _np(sims)))
    tokens = tuple(tuple(tokenizer.token_str(i) for i in ids) for ids in encoded)
    return ContextView(
        word=found,
        sentences=tuple(sentences),
        positions=tuple(positions),
        tokens=tokens,
        depths=depth_names(model.config.n_layer),
        between=between,
        towards=tuple(curves),
        notes=tuple(notes),
    )


# ----------------------------------------------------------------------------- trajectory


@dataclass(frozen=True)
class TrajectoryView:
    """The final hidden state after each token of the text (start token left out), in 2-D."""

    tokens: tuple[str, ...]
    ids: tuple[int, ...]
    points: np.ndarray  # (T, 2) PCA of the states
    explained: tuple[float, float]
    step: np.ndarray  # (T,) distance from the previous state (0 for the first)
    cosine_to_previous: np.ndarray  # (T,) (1 for the first)


def trajectory_view(model: GPT, tokenizer: Tokenizer, ids: list[int]) -> TrajectoryView:
    states = trace(model, ids).final_hidden[1:]  # after each of the text's tokens
    points, explained = pca_2d(_np(states))
    step = torch.zeros(len(states))
    cos = torch.ones(len(states))
    if len(states) > 1:
        step[1:] = (states[1:] - states[:-1]).norm(dim=-1)
        cos[1:] = F.cosine_similarity(states[1:], states[:-1], dim=-1)
    return TrajectoryView(
        tokens=tuple(tokenizer.token_str(i) for i in ids[1:]),
        ids=tuple(ids[1:]),
        points=points,
        explained=explained,
        step=_np(step),
        cosine_to_previous=_np(cos),
    )


# ----------------------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class VectorSummary:
    """A vector in a few numbers: its length, its first values and its norm."""

    size: int
    first: tuple[float, ...]
    norm: float


def summarise(vector: torch.Tensor, show: int = 4) -> VectorSummary:
    return VectorSummary(
        int(vector.numel()), tuple(float(x) for x in vector[:show].tolist()), float(vector.norm())
    )


@dataclass(frozen=True)
class BlockStep:
    """One block at the last position: what attention and the MLP add, and the stream after."""

    index: int
    attn: VectorSummary
    mlp: VectorSummary
    residual: VectorSummary


@dataclass(frozen=True)
class PipelineView:
    tokens: tuple[str, ...]
    ids: tuple[int, ...]
    embeddings: tuple[VectorSummary, ...]  # one per position
    blocks: tuple[BlockStep, ...]  # at the last position
    final: VectorSummary  # the final embedding (after the final norm) at the last position
    logit_stats: tuple[float, float, float, float]  # min, max, mean, std over the vocabulary
    top: tuple[NextRow, ...]  # most likely next tokens, probability at temperature 1
    top_logits: tuple[float, ...]
    probability_sum: float
    chosen: NextRow  # what temperature 0 picks
    attn_norms: np.ndarray  # (L, T) attention contribution norm, per layer and position
    mlp_norms: np.ndarray  # (L, T)
    residual_norms: np.ndarray  # (L + 1, T)
    logits: np.ndarray = field(metadata=NO_JSON)  # (V,) at the last position
    probabilities: np.ndarray = field(metadata=NO_JSON)  # (V,) softmax of the logits


def pipeline_view(model: GPT, tokenizer: Tokenizer, ids: list[int], top: int = 5) -> PipelineView:
    t = trace(model, ids)
    last = len(ids) - 1
    blocks = tuple(
        BlockStep(
            layer.index,
            summarise(layer.attn_out[last]),
            summarise(layer.mlp_out[last]),
            summarise(layer.residual_out[last]),
        )
        for layer in t.layers
    )
    logits = t.logits[last]
    probs = next_token_probabilities(logits[None], 1.0)[0]
    values, order = torch.sort(probs, descending=True, stable=True)
    cumulative = values[:top].double().cumsum(0).tolist()
    rows = tuple(
        NextRow(r + 1, int(i), tokenizer.token_str(int(i)), float(values[r]), cumulative[r])
        for r, i in enumerate(order[:top].tolist())
    )
    chosen_id = int(logits.argmax())
    chosen = NextRow(
        1,
        chosen_id,
        tokenizer.token_str(chosen_id),
        float(probs[chosen_id]),
        float(probs[chosen_id]),
    )
    return PipelineView(
        tokens=tuple(tokenizer.token_str(i) for i in ids),
        ids=tuple(ids),
        embeddings=tuple(summarise(v) for v in t.embeddings),
        blocks=blocks,
        final=summarise(t.final_hidden[last]),
        logit_stats=(
            float(logits.min()),
            float(logits.max()),
            float(logits.mean()),
            float(logits.std()),
        ),
        top=rows,
        top_logits=tuple(float(logits[r.id]) for r in rows),
        probability_sum=float(probs.double().sum()),
        chosen=chosen,
        attn_norms=_np(torch.stack([layer.attn_out.norm(dim=-1) for layer in t.layers])),
        mlp_norms=_np(torch.stack([layer.mlp_out.norm(dim=-1) for layer in t.layers])),
        residual_norms=_np(t.residual_stream().norm(dim=-1)),
        logits=_np(logits),
        probabilities=_np(probs),
    )
