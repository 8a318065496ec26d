"""Pictures for `glassgpt ngram`: letter frequencies, letter pairs, and n-gram models compared.

Drawing only: every function takes numbers computed elsewhere (`glassgpt.explain.ngram`) and writes one
PNG. Figures are made without pyplot (matplotlib's Agg canvas), so this works headless.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from glassgpt.explain.ngram import LetterStats, NGramRow, PairStats
from glassgpt.plots import save_png

DPI = 100
#: One colour per GPT line in the comparison (crimson first); more GPTs than colours are not drawn.
GPT_COLOURS = ("crimson", "darkviolet", "darkgreen", "saddlebrown")


def _save(fig: Figure, path: Path) -> Path:
    return save_png(fig, path, DPI)


def plot_letters(stats: LetterStats, path: Path) -> Path:
    """Bar chart of the letter frequencies a..z."""
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(list(stats.letters), 100 * stats.probabilities, color="#3b6ea8")
    ax.set_ylabel("% of letters")
    ax.set_title(f"Letter frequencies ({stats.total:,} letters, case folded)")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_pairs(pairs: PairStats, path: Path) -> Path:
    """Heatmap of P(second letter | first letter) over a..z and space, log colour scale."""
    probs = pairs.conditional
    labels = [("␣" if ch == " " else ch) for ch in pairs.symbols]
    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    ax = fig.add_subplot()
    shown = np.where(probs > 0, probs, np.nan)
    image = ax.imshow(shown, cmap="viridis", norm=LogNorm(vmin=1e-4, vmax=1.0))
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("second letter")
    ax.set_ylabel("first letter")
    ax.set_title("Letter pairs: P(second | first)  (blank = never seen)")
    fig.colorbar(image, ax=ax, shrink=0.8, label="probability")
    return _save(fig, path)


def plot_ngram_comparison(
    char_rows: Sequence[NGramRow],
    word_rows: Sequence[NGramRow],
    path: Path,
    gpts: Sequence[tuple[str, float]] = (),
) -> Path:
    """Two panels: distinct contexts per n (the table explodes) and held-out bits per byte, with
    each GPT in `gpts` ((label, bits per byte) pairs) as a dashed line across the right panel."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_ctx, ax_bpb = fig.subplots(1, 2)
    for rows, label, marker in ((char_rows, "characters", "o"), (word_rows, "words", "s")):
        if not rows:
            continue
        ns = [r.n for r in rows]
        ax_ctx.plot(ns, [max(r.contexts, 1) for r in rows], marker=marker, label=label)
        ax_bpb.plot(ns, [r.bits_per_byte for r in rows], marker=marker, label=label)
    ax_ctx.set_yscale("log")
    ax_ctx.set_xlabel("n (context = n-1 symbols)")
    ax_ctx.set_ylabel("distinct contexts seen")
    ax_ctx.set_title("The count table explodes")
    ax_bpb.set_xlabel("n")
    ax_bpb.set_ylabel("bits per byte (validation)")
    ax_bpb.set_title("Held-out bits per byte (lower is better)")
    for (label, bpb), colour in zip(gpts, GPT_COLOURS, strict=False):
        ax_bpb.axhline(bpb, color=colour, linestyle="--", label=label)
    for ax in (ax_ctx, ax_bpb):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)
