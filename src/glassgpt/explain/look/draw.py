"""PNG pictures of the `glassgpt look` views, drawn with matplotlib's headless Agg backend.

Each function takes a view from `glassgpt.explain.look.views` (plain numbers and numpy arrays, never a
model) and writes one PNG atomically; it returns nothing. Token labels use the same visible
spaces as the terminal ('·' for a space).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from glassgpt.explain.look.text import visible  # noqa: E402
from glassgpt.explain.look.views import (  # noqa: E402
    AttentionView,
    ContextView,
    EmbeddingsView,
    NextTable,
    PipelineView,
    TokensView,
    TrajectoryView,
)
from glassgpt.plots import save_png  # noqa: E402

DPI = 100


def label(token: str, limit: int = 16) -> str:
    """A token for a plot: visible spaces, '$' escaped (no mathtext), long ones shortened."""
    shown = visible(token)
    if len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return shown.replace("$", r"\$")


def _save(fig: Figure, path: str | Path) -> None:
    save_png(fig, path, DPI)
    plt.close(fig)


# ----------------------------------------------------------------------------- next


def draw_next(table: NextTable, path: str | Path) -> None:
    """One horizontal bar chart per temperature, over the same top tokens."""
    n = len(table.temperatures)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    height = max(2.5, 0.32 * (len(table.rows) + 1) + 1.2)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, height * rows), squeeze=False)
    names = [*(label(r.token) for r in table.rows), "(all others)"]
    y = np.arange(len(names))
    for ax, bars in zip(axes.flat, table.temperatures, strict=False):
        values = np.array([*bars.probabilities, bars.rest])
        colour = "tab:blue" if bars.temperature != 1 else "tab:orange"
        ax.barh(y, values, color=[colour] * (len(values) - 1) + ["lightgray"])
        ax.set_yticks(y, names, fontsize=9)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.12)
        for yi, v in zip(y, values, strict=True):
            ax.text(v + 0.01, yi, f"{v:.3f}", va="center", fontsize=8)
        ax.set_title(f"temperature {bars.temperature:g}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("probability of the next token")
    fig.suptitle(f"Next token after {label(table.text, 60)!r}", fontsize=12)
    fig.tight_layout()
    _save(fig, path)


# ----------------------------------------------------------------------------- tokens


def _token_rows(pieces: list[str], per_line: int) -> list[list[tuple[str, int]]]:
    """Lay tokens out in lines of about `per_line` character cells: [(text, width), ...]."""
    lines: list[list[tuple[str, int]]] = [[]]
    used = 0
    for text in pieces:
        width = max(1, len(text))
        if used and used + width > per_line:
            lines.append([])
            used = 0
        lines[-1].append((text, width))
        used += width
    return lines


def draw_tokens(view: TokensView, path: str | Path, per_line: int = 48) -> None:
    """Each tokenizer's split as coloured boxes, one box per token, its id below."""
    layouts = [_token_rows([visible(p.text) for p in s.pieces], per_line) for s in view.splits]
    total_lines = sum(len(layout) + 1 for layout in layouts)
    fig = plt.figure(figsize=(per_line * 0.2 + 0.8, 0.62 * total_lines + 0.6))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98))
    ax.set_xlim(-0.5, per_line + 0.5)
    ax.set_ylim(total_lines * 1.3 + 0.2, 0)
    ax.axis("off")
    colours = plt.get_cmap("tab20").colors
    row = 0.0
    for split, layout in zip(view.splits, layouts, strict=True):
        ax.text(
            0,
            row + 0.55,
            f"{split.name} ({split.kind}, vocabulary {split.vocab_size:,}): "
            f"{len(split.pieces)} tokens, {split.chars_per_token:.2f} characters per token",
            fontsize=10,
            fontweight="bold",
            va="center",
        )
        row += 1.3
        index = 0
        for line in layout:
            x = 0.0
            for text, width in line:
                piece = split.pieces[index]
                ax.add_patch(
                    Rectangle(
                        (x, row),
                        width,
                        0.8,
                        facecolor=colours[index % 20],
                        edgecolor="black",
                        linewidth=0.6,
                        alpha=0.55,
                    )
                )
                ax.text(
                    x + width / 2,
                    row + 0.4,
                    text.replace("$", r"\$"),
                    ha="center",
                    va="center",
                    fontsize=10,
                    family="monospace",
                )
                ax.text(
                    x + width / 2,
                    row + 1.0,
                    str(piece.id),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="dimgray",
                )
                x += width
                index += 1
            row += 1.3
    _save(fig, path)


# ----------------------------------------------------------------------------- embeddings


def draw_embeddings(view: EmbeddingsView, path: str | Path) -> None:
    """Panels for what was computed: neighbours, analogy, 2-D map, sentence similarities."""
    panels = [*(("near", n) for n in view.near)]
    if view.analogy is not None:
        panels.append(("analogy", view.analogy))
    if view.word_map is not None:
        panels.append(("map", view.word_map))
    if view.sentences is not None:
        panels.append(("sentences", view.sentences))
    cols = min(2, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 4.6 * rows), squeeze=False)
    for ax, (kind, data) in zip(axes.flat, panels, strict=False):
        if kind in ("near", "analogy"):
            items = data.neighbours if kind == "near" else data.candidates
            names = [label(n.token) for n in items]
            values = [n.similarity for n in items]
            y = np.arange(len(names))
            ax.barh(y, values, color="tab:green" if kind == "near" else "tab:purple")
            ax.set_yticks(y, names, fontsize=9)
            ax.invert_yaxis()
            ax.set_xlabel("cosine similarity")
            ax.set_xlim(min(0.0, min(values) - 0.05), 1.0)
            ax.grid(axis="x", alpha=0.3)
            if kind == "near":
                ax.set_title(f"nearest to {label(data.word.lookup)!r}", fontsize=10)
            else:
                title = f"{data.a.word} : {data.b.word} :: {data.c.word} : ?"
                if data.expect is not None:
                    title += f"   ({data.expect.word!r} ranks {data.expect_rank})"
                ax.set_title(title, fontsize=10)
        elif kind == "map":
            ax.scatter(data.points[:, 0], data.points[:, 1], color="tab:blue")
            for w, (x, y) in zip(data.words, data.points, strict=True):
                ax.annotate(
                    w.word.replace("$", r"\$"),
                    (x, y),
                    xytext=(4, 3),
                    textcoords="offset points",
                    fontsize=9,
                )
            ax.set_xlabel(f"PC 1 ({data.explained[0]:.0%} of variance)")
            ax.set_ylabel(f"PC 2 ({data.explained[1]:.0%})")
            ax.set_title("words in embedding space (PCA)", fontsize=10)
            ax.grid(alpha=0.3)
        else:
            n = len(data.sentences)
            low = float(data.matrix.min())
            image = ax.imshow(data.matrix, vmin=low, vmax=1.0, cmap="viridis")
            ax.set_xticks(range(n), [f"S{i + 1}" for i in range(n)])
            ax.set_yticks(
                range(n),
                [f"S{i + 1}: {label(s, 28)}" for i, s in enumerate(data.sentences)],
                fontsize=8,
            )
            for i in range(n):
                for j in range(n):
                    v = data.matrix[i, j]
                    ax.text(
                        j,
                        i,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="black" if v > (low + 1) / 2 else "white",
                    )
            fig.colorbar(image, ax=ax, fraction=0.046)
            ax.set_title(
                f"sentence embeddings: cosine similarity (colours from {low:.2f})", fontsize=10
            )
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    _save(fig, path)


# ----------------------------------------------------------------------------- attention


def draw_attention(view: AttentionView, path: str | Path) -> None:
    """A grid of heatmaps, one per (layer, head): row = query position, column = key position."""
    layers, heads = view.layers, view.heads
    t = len(view.tokens)
    show_labels = t <= 32 and len(heads) <= 8
    cell = 2.4 + (0.06 * t if show_labels else 0)
    fig, axes = plt.subplots(
        len(layers),
        len(heads),
        figsize=(cell * len(heads) + 1.5, cell * len(layers) + 0.8),
        squeeze=False,
        layout="constrained",
    )
    names = [label(tok, 10) for tok in view.tokens]
    size = 7 if t <= 16 else 5
    for r, li in enumerate(layers):
        for c, hi in enumerate(heads):
            ax = axes[r, c]
            w = np.ma.masked_array(view.weights[li, hi], mask=np.triu(np.ones((t, t)), 1) > 0)
            image = ax.imshow(w, vmin=0, vmax=1, cmap="magma")
            ax.set_title(f"layer {li} head {hi}", fontsize=9)
            ax.set_xticks(
                range(t),
                names if show_labels and r == len(layers) - 1 else [],
                rotation=90,
                fontsize=size,
            )
            ax.set_yticks(range(t), names if show_labels and c == 0 else [], fontsize=size)
            ax.tick_params(length=0)
            ax.add_patch(
                Rectangle(
                    (-0.5, view.position - 0.5), t, 1, fill=False, edgecolor="cyan", linewidth=0.8
                )
            )
    fig.suptitle(
        f"attention weights (row: the position reading, column: the position read; "
        f"cyan box: position {view.position})",
        fontsize=10,
    )
    fig.colorbar(image, ax=axes, fraction=0.02, pad=0.01, label="weight")
    _save(fig, path)


# ----------------------------------------------------------------------------- context


def draw_context(view: ContextView, path: str | Path) -> None:
    """The word's similarity between the sentences, and to each context word, against depth."""
    x = np.arange(len(view.depths))
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.plot(x, view.between, "k-o", label=f"{view.word.word!r}: sentence 1 vs sentence 2")
    colours = plt.get_cmap("tab10").colors
    styles = ("-", "--")
    for k, curve in enumerate(view.towards):
        for n in (0, 1):
            ax.plot(
                x,
                curve.similarity[n],
                styles[n],
                marker="s",
                color=colours[k % 10],
                label=f"in sentence {n + 1} vs {curve.word!r}",
            )
    ax.set_xticks(x, list(view.depths), rotation=20)
    ax.set_ylabel("cosine similarity")
    ax.set_xlabel("depth (residual stream after each stage)")
    ax.set_title(f"{view.word.word!r} in context, layer by layer", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    _save(fig, path)


# ----------------------------------------------------------------------------- trajectory


def _quoted_if_symbol(text: str) -> str:
    """Punctuation tokens are quoted so that a lone ',' or '.' is visible on a plot."""
    return text if any(c.isalnum() for c in text) else f"'{text}'"


def draw_trajectory(view: TrajectoryView, path: str | Path) -> None:
    """The text's path through meaning space: one point per token, joined in order."""
    fig, ax = plt.subplots(figsize=(7.5, 6))
    pts = view.points
    ax.plot(pts[:, 0], pts[:, 1], "-", color="lightgray", zorder=1)
    order = np.arange(1, len(pts) + 1)
    scatter = ax.scatter(pts[:, 0], pts[:, 1], c=order, cmap="viridis", zorder=2, s=40)
    for i, (tok, (x, y)) in enumerate(zip(view.tokens, pts, strict=True)):
        ax.annotate(
            f"{i + 1} {_quoted_if_symbol(label(tok))}",
            (x, y),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=9,
        )
    if len(pts) > 1:
        for a, b in zip(pts[:-1], pts[1:], strict=True):
            ax.annotate(
                "", xy=b, xytext=a, arrowprops={"arrowstyle": "->", "color": "gray", "lw": 0.8}
            )
    fig.colorbar(scatter, ax=ax, label="token number")
    ax.set_xlabel(f"PC 1 ({view.explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({view.explained[1]:.0%})")
    ax.set_title("trajectory of the text through meaning space (final hidden states)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


# ----------------------------------------------------------------------------- pipeline


def draw_pipeline(view: PipelineView, path: str | Path) -> None:
    """Residual-stream norms, contributions per block, all logits, and the top probabilities."""
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    t = len(view.tokens)
    ax = axes[0, 0]
    image = ax.imshow(view.residual_norms, aspect="auto", cmap="viridis")
    ax.set_yticks(
        range(view.residual_norms.shape[0]),
        ["embedding", *(f"after block {i}" for i in range(view.residual_norms.shape[0] - 1))],
    )
    if t <= 24:
        ax.set_xticks(range(t), [label(tok, 10) for tok in view.tokens], rotation=90, fontsize=8)
    else:
        ax.set_xlabel("position")
    ax.set_title("1-3. |x|, the residual stream's norm (depth x position)", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046)

    ax = axes[0, 1]
    layers = np.arange(view.attn_norms.shape[0])
    ax.bar(layers - 0.2, view.attn_norms[:, -1], width=0.4, label="attention adds |a|")
    ax.bar(layers + 0.2, view.mlp_norms[:, -1], width=0.4, label="MLP adds |m|")
    ax.plot(layers, view.residual_norms[1:, -1], "k-o", label="|x| after the block")
    ax.set_xticks(layers, [f"block {i}" for i in layers])
    ax.set_title(f"3. each block at the last position ({label(view.tokens[-1])!r})", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)

    ax = axes[1, 0]
    ax.hist(view.logits, bins=80, color="tab:gray")
    ax.axvline(
        float(view.logits[view.chosen.id]),
        color="tab:red",
        label=f"top: {label(view.chosen.token)!r}",
    )
    ax.set_yscale("log")
    ax.set_xlabel("logit")
    ax.set_ylabel("tokens")
    ax.set_title(f"5. logits: one score for each of the {len(view.logits):,} tokens", fontsize=10)
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    names = [label(r.token) for r in view.top]
    probs = [r.probability for r in view.top]
    y = np.arange(len(names))
    ax.barh(y, probs, color="tab:orange")
    ax.set_yticks(y, names, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, min(1.0, max(probs) * 1.3 + 0.02))
    for yi, p in zip(y, probs, strict=True):
        ax.text(p, yi, f" {p:.3f}", va="center", fontsize=8)
    ax.set_xlabel("probability")
    ax.set_title(
        f"6-7. softmax: the most likely next tokens (sum of all = {view.probability_sum:.4f})",
        fontsize=10,
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
