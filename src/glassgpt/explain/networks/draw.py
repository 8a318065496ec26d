"""Pictures for `glassgpt nn`: the symbol network, its weights and loss, the three regions.

Drawing only: the numbers come from `glassgpt.explain.networks.symbols` and `glassgpt.explain.networks.regions`. Figures
are made without pyplot (matplotlib's Agg canvas), so this works headless.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from glassgpt.atomic import atomic_write_bytes

DPI = 100
REGION_COLOURS = np.array([[0.85, 0.37, 0.0], [0.0, 0.45, 0.70], [0.0, 0.62, 0.45]])


def _save(fig: Figure, path: Path) -> Path:
    """Write the PNG with a 256-colour palette: the many see-through lines of the network
    drawing would otherwise make it several times larger, with no visible difference."""
    from PIL import Image  # Pillow comes with matplotlib

    buffer, quantized = io.BytesIO(), io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png")
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=256, dither=Image.Dither.NONE).save(
            quantized, format="png", optimize=True
        )
    atomic_write_bytes(path, quantized.getvalue())  # never a half-written picture
    return path


def _pixels(ax, drawing: np.ndarray) -> None:
    """A 3x3 drawing: 1 = white, -1 = black."""
    ax.imshow(drawing.reshape(3, 3), cmap="gray", vmin=-1, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("0.6")


def plot_symbol_examples(
    x: np.ndarray,
    y: np.ndarray,
    predicted: np.ndarray,
    names: Sequence[str],
    clean: np.ndarray,
    path: Path,
    per_symbol: int = 7,
) -> Path:
    """One row per symbol: the clean drawing, then test drawings titled with the answer."""
    fig = Figure(figsize=(1.1 * (per_symbol + 1), 1.25 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), per_symbol + 1, squeeze=False)
    for row, name in enumerate(names):
        _pixels(axes[row, 0], clean[row])
        axes[row, 0].set_title(f"clean {name}", fontsize=9)
        picks = np.flatnonzero(y == row)[:per_symbol]
        for col in range(per_symbol):
            ax = axes[row, col + 1]
            if col >= len(picks):
                ax.axis("off")
                continue
            i = picks[col]
            _pixels(ax, x[i])
            right = predicted[i] == y[i]
            ax.set_title(f"-> {names[predicted[i]]}", fontsize=9, color="green" if right else "red")
    fig.suptitle("Noisy test drawings and the network's answers", fontsize=11)
    return _save(fig, path)


def plot_loss(
    losses: np.ndarray,
    path: Path,
    title: str,
    test_losses: np.ndarray | None = None,
) -> Path:
    """Loss per training step (log scale)."""
    fig = Figure(figsize=(6, 3.4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(np.arange(len(losses)), losses, label="training loss")
    if test_losses is not None:
        ax.plot(np.arange(len(test_losses)), test_losses, label="test loss", alpha=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("gradient descent step")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_symbol_network(
    weights: Sequence[np.ndarray],
    layer_labels: Sequence[str],
    output_names: Sequence[str],
    path: Path,
) -> Path:
    """The network drawn neuron by neuron, and each first-layer neuron's 9 weights as a 3x3.

    `weights` are W1, W2, W3 (rows = receiving neuron). A line's colour is the weight's sign
    (blue +, red -) and its width and opacity its size.
    """
    sizes = [weights[0].shape[1]] + [w.shape[0] for w in weights]
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1.6, 1])
    ax = left.add_subplot()
    positions = []
    for layer, size in enumerate(sizes):
        ys = np.linspace(0.95, 0.05, size) if size > 1 else np.array([0.5])
        positions.append(np.stack([np.full(size, layer), ys], axis=1))
    for layer, w in enumerate(weights):
        src, dst = positions[layer], positions[layer + 1]
        biggest = float(np.abs(w).max()) or 1.0  # per layer: the first layer is readable too
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                size = abs(w[i, j]) / biggest
                ax.plot(
                    [src[j, 0], dst[i, 0]],
                    [src[j, 1], dst[i, 1]],
                    color="#2166ac" if w[i, j] > 0 else "#b2182b",
                    linewidth=0.2 + 2.5 * size,
                    alpha=0.1 + 0.8 * size,
                    zorder=1,
                )
    for layer, pos in enumerate(positions):
        ax.scatter(pos[:, 0], pos[:, 1], s=120, color="white", edgecolor="black", zorder=2)
        ax.text(layer, 1.02, layer_labels[layer], ha="center", va="bottom", fontsize=9)
    for i, name in enumerate(output_names):
        ax.text(len(sizes) - 1 + 0.08, positions[-1][i, 1], name, va="center", fontsize=11)
    for j in range(sizes[0]):
        ax.text(-0.08, positions[0][j, 1], f"px{j}", va="center", ha="right", fontsize=8)
    ax.set_xlim(-0.4, len(sizes) - 0.6)
    ax.set_ylim(0.0, 1.1)
    ax.axis("off")
    left.suptitle("Learned weights (blue +, red -; thicker = larger within its layer)", fontsize=10)

    w1 = weights[0]
    cols = int(np.ceil(np.sqrt(w1.shape[0])))
    rows = int(np.ceil(w1.shape[0] / cols))
    limit = float(np.abs(w1).max()) or 1.0
    axes = right.subplots(rows, cols, squeeze=False)
    for k, axk in enumerate(axes.ravel()):
        axk.set_xticks([])
        axk.set_yticks([])
        if k >= w1.shape[0]:
            axk.axis("off")
            continue
        axk.imshow(w1[k].reshape(3, 3), cmap="RdBu", vmin=-limit, vmax=limit)
        axk.set_title(f"h1_{k}", fontsize=8)
    right.suptitle("First hidden layer: the weight from each pixel", fontsize=10)
    return _save(fig, path)


def plot_regions_map(
    xs: np.ndarray,
    region: np.ndarray,
    entropy: np.ndarray,
    truth: np.ndarray,
    max_entropy: float,
    names: Sequence[str],
    path: Path,
) -> Path:
    """Left: the plane coloured by predicted region, washed to grey where the network is unsure.
    Right: the uncertainty itself (entropy in bits, log scale). Both with the true boundaries.
    """
    fig = Figure(figsize=(10.5, 4.8), layout="constrained")
    ax_map, ax_ent = fig.subplots(1, 2)
    extent = (xs[0], xs[-1], xs[0], xs[-1])
    # dark in proportion to the uncertainty (a power < 1: a little doubt is already visible)
    doubt = (np.clip(entropy / max_entropy, 0, 1) ** 0.35)[..., None]
    rgb = REGION_COLOURS[region] * (1 - doubt) + 0.15 * doubt
    ax_map.imshow(rgb, origin="lower", extent=extent, interpolation="nearest")
    ax_map.set_title("Predicted region (dark = can't make up its mind)", fontsize=10)
    image = ax_ent.imshow(
        np.clip(entropy, 1e-4, None),
        origin="lower",
        extent=extent,
        cmap="magma",
        norm=LogNorm(vmin=1e-4, vmax=max_entropy),
    )
    fig.colorbar(image, ax=ax_ent, shrink=0.85, label="entropy of the output (bits)")
    ax_ent.set_title("Uncertainty (dashed: the true boundaries)", fontsize=10)
    ax_ent.contour(
        xs, xs, truth, levels=[0.5, 1.5], colors="cyan", linewidths=1.0, linestyles="dashed"
    )
    for ax in (ax_map, ax_ent):
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    handles = [
        ax_map.scatter([], [], color=REGION_COLOURS[i], marker="s", label=name)
        for i, name in enumerate(names)
    ]
    ax_map.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.9)
    return _save(fig, path)


def plot_sweep(rows: Sequence, path: Path) -> Path:
    """Final training loss and test accuracy against width, one line per number of layers."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for layers in sorted({r.layers for r in rows}):
        mine = sorted((r for r in rows if r.layers == layers), key=lambda r: r.width)
        widths = [r.width for r in mine]
        label = f"{layers} hidden layer" + ("s" if layers > 1 else "")
        ax_loss.plot(widths, [max(r.final_loss, 1e-6) for r in mine], marker="o", label=label)
        ax_acc.plot(widths, [100 * r.test_accuracy for r in mine], marker="o", label=label)
    widths = sorted({r.width for r in rows})
    for ax in (ax_loss, ax_acc):
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.minorticks_off()
        ax.set_xlabel("neurons per hidden layer")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("final training loss")
    ax_loss.set_title("Larger networks fit better")
    ax_acc.set_ylabel("test accuracy (%)")
    ax_acc.set_title("Test accuracy on new points")
    return _save(fig, path)
