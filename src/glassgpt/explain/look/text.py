"""Terminal text for each `glassgpt look` view: aligned tables of the view's numbers.

Tokens are shown with their spaces made visible: '·' for a space, '↵' for a newline, '⇥' for a
tab, so " the" reads '·the'. Every function takes a view from `glassgpt.explain.look.views` and returns
a string (no printing here).
"""

from __future__ import annotations

from glassgpt.explain.look.views import (
    AttentionView,
    ContextView,
    EmbeddingsView,
    ModelInfo,
    NextTable,
    PipelineView,
    TokensView,
    TrajectoryView,
    VectorSummary,
)

_VISIBLE = str.maketrans({" ": "·", "\n": "↵", "\t": "⇥", "\r": "␍"})


def visible(text: str) -> str:
    """Spaces and line breaks made visible: ' the\\n' -> '·the↵'."""
    return text.translate(_VISIBLE)


def quoted(text: str, limit: int = 60) -> str:
    shown = visible(text)
    return f"'{shown}'" if len(shown) <= limit else f"'{shown[: limit - 1]}…'"


def bar(value: float, width: int = 30) -> str:
    """A horizontal bar of `value` (0..1) in eighths of a character."""
    eighths = round(max(0.0, min(1.0, value)) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + ("" if part == 0 else " ▏▎▍▌▋▊▉"[part])


def count(n: int) -> str:
    """A parameter count for people: 2,557,632 -> '2.56M', 61,312 -> '61.3K'."""
    if n >= 1_000_000:
        return f"{n / 1e6:.3g}M"
    return f"{n / 1e3:.3g}K" if n >= 1000 else str(n)


def header(info: ModelInfo) -> str:
    kv = f" ({info.n_kv_head} kv)" if info.n_kv_head != info.n_head else ""
    return (
        f"model: {info.path} ({info.preset} preset, step {info.step}: "
        f"{count(info.parameters)} parameters, {info.n_layer} layers x {info.n_head} heads{kv}, "
        f"d_model {info.d_model}, {info.tokenizer} vocab {info.vocab_size:,}, "
        f"context {info.context_length})"
    )


def _fmt_temp(t: float) -> str:
    return f"T={t:g}"


def render_next(table: NextTable, temperatures: bool = True) -> str:
    """The ranked table; with `temperatures`, also the same rows at each temperature."""
    other = f"(other {table.vocab_size - len(table.rows):,})"
    width = max(len(other), *(len(visible(r.token)) for r in table.rows)) + 2
    lines = [
        f"after {quoted(table.text)} ({len(table.ids)} tokens with the start token), "
        f"the next token (temperature 1):",
        f"{'rank':>5}  {'token':<{width}}{'id':>6}  {'prob':>7}  {'cum':>7}",
    ]
    for r in table.rows:
        lines.append(
            f"{r.rank:>5}  {visible(r.token):<{width}}{r.id:>6}  {r.probability:>7.4f}  "
            f"{r.cumulative:>7.4f}  {bar(r.probability)}"
        )
    rest = 1.0 - table.rows[-1].cumulative
    lines.append(f"{'':>5}  {other:<{width}}{'':>6}  {max(0.0, rest):>7.4f}")
    lines.append(f"entropy of the whole distribution: {table.entropy_bits:.2f} bits")
    if not temperatures:
        return "\n".join(lines)
    lines.append("")
    lines.append("temperature reshapes the same table (T=0: always the top token):")
    lines.append(
        f"{'':>5}  {'token':<{width}}"
        + "".join(f"{_fmt_temp(b.temperature):>8}" for b in table.temperatures)
    )
    for i, r in enumerate(table.rows):
        lines.append(
            f"{r.rank:>5}  {visible(r.token):<{width}}"
            + "".join(f"{b.probabilities[i]:>8.4f}" for b in table.temperatures)
        )
    lines.append(
        f"{'':>5}  {'(the rest)':<{width}}" + "".join(f"{b.rest:>8.4f}" for b in table.temperatures)
    )
    return "\n".join(lines)


def render_tokens(view: TokensView) -> str:
    lines = [f"text: {quoted(view.text, 200)} ({len(view.text)} characters)"]
    for split in view.splits:
        lines.append("")
        lines.append(
            f"{split.name} ({split.kind}, {split.vocab_size:,} token vocabulary): "
            f"{len(split.pieces)} tokens, {split.chars_per_token:.2f} characters per token"
        )
        lines.append("  |" + "|".join(visible(p.text) for p in split.pieces) + "|")
        width = max(8, *(len(visible(p.text)) for p in split.pieces)) + 2
        lines.append(f"  {'#':>3}  {'token':<{width}}{'id':>7}  {'chars':>5}  {'bytes':>5}")
        for n, p in enumerate(split.pieces):
            lines.append(
                f"  {n:>3}  {visible(p.text):<{width}}{p.id:>7}  {p.chars:>5}  {p.bytes:>5}"
            )
    return "\n".join(lines)


def _word(w) -> str:
    pieces = " ".join(quoted(p) for p in w.pieces)
    how = f" = {len(w.ids)} tokens {pieces}, mean vector" if w.split else f" = token {w.ids[0]}"
    return f"{quoted(w.lookup)}{how}"


def render_embeddings(view: EmbeddingsView) -> str:
    lines: list[str] = []
    for near in view.near:
        lines.append(
            f"nearest neighbours of {_word(near.word)} (cosine similarity of input "
            f"embeddings, whole vocabulary):"
        )
        width = max(8, *(len(visible(n.token)) for n in near.neighbours)) + 2
        for rank, n in enumerate(near.neighbours, start=1):
            lines.append(
                f"  {rank:>3}  {visible(n.token):<{width}}{n.id:>6}  {n.similarity:>7.4f}  "
                f"{bar(max(0.0, n.similarity), 20)}"
            )
        lines.append("")
    a = view.analogy
    if a is not None:
        lines.append(
            f"analogy {a.a.word} : {a.b.word} :: {a.c.word} : ?   "
            f"(nearest to {a.b.word} - {a.a.word} + {a.c.word}, the three left out)"
        )
        for w in (a.a, a.b, a.c):
            lines.append(f"  {_word(w)}")
        for rank, n in enumerate(a.candidates, start=1):
            lines.append(f"  {rank:>3}  {visible(n.token):<14}{n.id:>6}  {n.similarity:>7.4f}")
        if a.expect is not None:
            verdict = "right" if a.expect_rank == 1 else "not the top answer"
            lines.append(
                f"  expected {quoted(a.expect.lookup)}: rank {a.expect_rank} of "
                f"{a.candidates_total:,} (score {a.expect_score:.4f}): {verdict}; "
                f"by similarity to {a.c.word!r} alone it ranks {a.baseline_rank}"
            )
        else:
            lines.append("  (give --expect WORD to see where the right answer ranks)")
        lines.append(
            f"  note: a {count(view.parameters)}-parameter model has weak analogies: "
            "read the scores, and compare with the baseline rank"
        )
        lines.append("")
    m = view.word_map
    if m is not None:
        lines.append(
            f"2-D map (PCA of input embeddings; axes hold {m.explained[0]:.0%} and "
            f"{m.explained[1]:.0%} of the words' variance):"
        )
        for w, (x, y) in zip(m.words, m.points, strict=True):
            split = f"  ({len(w.ids)} tokens, mean)" if w.split else ""
            lines.append(f"  {w.word:<14}{x:>8.3f} {y:>8.3f}{split}")
        lines.append("")
    s = view.sentences
    if s is not None:
        lines.append(
            "sentence embeddings (mean final hidden state over each sentence's tokens), "
            "cosine similarity:"
        )
        for i, (text, n) in enumerate(zip(s.sentences, s.tokens, strict=True), start=1):
            lines.append(f"  S{i}: {quoted(text)} ({n} tokens)")
        lines.append(
            "      " + "".join(f"{'S' + str(i):>7}" for i in range(1, len(s.sentences) + 1))
        )
        for i, row in enumerate(s.matrix, start=1):
            lines.append(f"  S{i:<3}" + "".join(f"{v:>7.3f}" for v in row))
        lines.append("")
    return "\n".join(lines).rstrip()


def render_attention(view: AttentionView) -> str:
    t = len(view.tokens)
    lines = [
        "tokens: " + " ".join(f"{i}:{visible(tok)}" for i, tok in enumerate(view.tokens)),
        f"attention weights: {len(view.layers)} layer(s) x {len(view.heads)} head(s), each "
        f"{t} x {t} (row = a position, columns = the positions it reads; rows sum to 1, "
        "nothing reads the future)",
        "",
        f"position {view.position} ({quoted(view.tokens[view.position])}) attends most to:",
    ]
    for f in view.focus:
        targets = "  ".join(f"{p.position}:{visible(p.token)} {p.weight:.2f}" for p in f.targets)
        lines.append(f"  layer {f.layer} head {f.head}:  {targets}")
    if len(view.layers) == 1 and len(view.heads) == 1 and t <= 24:
        w = view.weights[view.layers[0], view.heads[0]]
        lines.append("")
        lines.append(f"layer {view.layers[0]} head {view.heads[0]}, all rows:")
        lines.append("      " + "".join(f"{i:>5}" for i in range(t)))
        for i in range(t):
            cells = "".join(f"{w[i, j]:>5.2f}" if j <= i else f"{'.':>5}" for j in range(t))
            lines.append(f"  {i:>3} {cells}  {visible(view.tokens[i])}")
    return "\n".join(lines)


def render_context(view: ContextView) -> str:
    w = view.word
    lines = []
    for n, (s, pos, toks) in enumerate(
        zip(view.sentences, view.positions, view.tokens, strict=True), start=1
    ):
        lines.append(
            f"sentence {n}: {quoted(s)}: {quoted(w.word)} is token {pos} "
            f"({quoted(toks[pos])}) of {len(toks)}"
        )
    for note in view.notes:
        lines.append(f"note: {note}")
    lines.append("")
    head = f"  {'depth':<12}{'S1 vs S2':>10}"
    for c in view.towards:
        head += "".join(f"{f'S{n}~{c.word}':>{max(10, len(c.word) + 5)}}" for n in (1, 2))
    lines.append(f"cosine similarity of the vector of {quoted(w.word)}, layer by layer:")
    lines.append(head)
    for d, name in enumerate(view.depths):
        row = f"  {name:<12}{view.between[d]:>10.3f}"
        for c in view.towards:
            row += "".join(f"{c.similarity[n, d]:>{max(10, len(c.word) + 5)}.3f}" for n in (0, 1))
        lines.append(row)
    for c in view.towards:
        lines.append(f"  {c.word!r} vectors: from {c.source}, same depth")
    last = len(view.depths) - 1
    lines.append(
        f"  at the last depth the two {w.word!r} vectors differ by "
        f"1 - cosine = {1 - float(view.between[last]):.3f}"
    )
    for c in view.towards:
        s1, s2 = float(c.similarity[0, last]), float(c.similarity[1, last])
        if abs(s1 - s2) < 0.0005:  # below the printed precision: say so rather than pick a side
            lines.append(
                f"  {w.word!r} is as close to {c.word!r} in both sentences ({s1:.3f} vs {s2:.3f})"
            )
            continue
        closer = 1 if s1 > s2 else 2
        lines.append(
            f"  {w.word!r} is closer to {c.word!r} in sentence {closer} "
            f"({max(s1, s2):.3f} vs {min(s1, s2):.3f}, by {abs(s1 - s2):.3f})"
        )
    return "\n".join(lines)


def render_trajectory(view: TrajectoryView) -> str:
    lines = [
        f"path of the text through meaning space: final hidden state after each token, PCA to 2-D "
        f"(axes hold {view.explained[0]:.0%} and {view.explained[1]:.0%} of its variance)",
        f"  {'#':>3}  {'token':<14}{'x':>8}{'y':>8}{'step':>8}{'cos prev':>10}",
    ]
    for i, tok in enumerate(view.tokens):
        x, y = view.points[i]
        lines.append(
            f"  {i + 1:>3}  {visible(tok):<14}{x:>8.2f}{y:>8.2f}{view.step[i]:>8.2f}"
            f"{view.cosine_to_previous[i]:>10.3f}"
        )
    return "\n".join(lines)


def _vec(v: VectorSummary) -> str:
    values = ", ".join(f"{x:+.3f}" for x in v.first)
    return f"({v.size},) [{values}, ...] norm {v.norm:.3f}"


def render_pipeline(view: PipelineView) -> str:
    last = len(view.ids) - 1
    lines = [
        "1. tokens -> ids",
        "   " + "  ".join(f"{visible(t)}={i}" for t, i in zip(view.tokens, view.ids, strict=True)),
        f"2. embeddings: {len(view.ids)} vectors of {view.embeddings[0].size} numbers "
        "(one row of the embedding matrix per id)",
    ]
    for t, e in zip(view.tokens, view.embeddings, strict=True):
        lines.append(f"   {visible(t):<12} {_vec(e)}")
    lines.append(
        f"3. {len(view.blocks)} blocks at the last position ({last}: "
        f"{quoted(view.tokens[last])}); the stream x += attention, then x += MLP"
    )
    lines.append(
        f"   {'block':<6}{'|attn|':>9}{'|mlp|':>9}{'|x| after':>11}   x after (first values)"
    )
    lines.append(f"   {'embed':<6}{'':>9}{'':>9}{view.embeddings[last].norm:>11.3f}")
    for b in view.blocks:
        values = ", ".join(f"{x:+.3f}" for x in b.residual.first)
        lines.append(
            f"   {b.index:<6}{b.attn.norm:>9.3f}{b.mlp.norm:>9.3f}{b.residual.norm:>11.3f}"
            f"   [{values}, ...]"
        )
    lo, hi, mean, std = view.logit_stats
    lines += [
        f"4. final embedding (after the final norm): {_vec(view.final)}",
        f"5. logits: {view.logits.shape[0]:,} scores (final embedding · each output row): "
        f"min {lo:.2f}, max {hi:.2f}, mean {mean:.2f}, std {std:.2f}",
        f"6. softmax -> probabilities: {view.logits.shape[0]:,} numbers summing to "
        f"{view.probability_sum:.6f}",
        f"   {'rank':>4}  {'token':<12}{'id':>6}{'logit':>9}{'prob':>9}",
    ]
    for r, logit in zip(view.top, view.top_logits, strict=True):
        lines.append(
            f"   {r.rank:>4}  {visible(r.token):<12}{r.id:>6}{logit:>9.3f}{r.probability:>9.4f}"
        )
    lines.append(
        f"7. choice at temperature 0: {quoted(view.chosen.token)} (id {view.chosen.id}, "
        f"probability {view.chosen.probability:.4f})"
    )
    return "\n".join(lines)
