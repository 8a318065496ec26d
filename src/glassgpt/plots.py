"""Drawing for training (the loss curve from `metrics.jsonl`) and the one PNG writer every
picture uses. Headless (matplotlib's Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.figure import Figure  # noqa: E402

from glassgpt.atomic import atomic_write  # noqa: E402


def save_png(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write `fig` as a PNG atomically (never a half-written picture), making folders as needed."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    return Path(path)


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl (the run folder's own reader: a line cut short by a kill is
    skipped); imported here, not at the top, so drawing needs no torch."""
    from glassgpt.runs import read_jsonl

    return read_jsonl(path)


def plot_loss_curve(metrics_path: Path, png_path: Path) -> bool:
    """Train and validation loss against step, with validation bits per byte on a second axis.

    Returns False (and draws nothing) when there are no metrics yet.
    """
    records = read_metrics(metrics_path)
    if not records:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
    # Chat tuning validates loss only (on the answers' tokens): bits per byte are drawn when present.
    val = [(r["step"], r["val_loss"], r.get("val_bpb")) for r in records if "val_loss" in r]
    ax.plot(*zip(*train, strict=True), label="train loss", color="tab:blue", alpha=0.7)
    if val:
        steps, losses, bpbs = zip(*val, strict=True)
        ax.plot(steps, losses, "o-", label="validation loss", color="tab:orange")
        title = f"Training: final validation {losses[-1]:.3f} nats/token"
        if None not in bpbs:
            bpb_axis = ax.twinx()
            bpb_axis.plot(steps, bpbs, "s--", color="tab:green", label="validation bits/byte", alpha=0.8)
            bpb_axis.set_ylabel("bits per byte", color="tab:green")
            title += f", {bpbs[-1]:.3f} bits/byte"
        ax.set_title(title)
    else:
        ax.set_title("Training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    save_png(fig, png_path)
    plt.close(fig)
    return True


def plot_metric_panels(metrics_path: Path, png_path: Path, panels: list[tuple[str, str]], title: str) -> bool:
    """One panel per (metrics key, label) against step, side by side (e.g. RL's reward, held-out
    accuracy and response length). Returns False (and draws nothing) when no record has any key."""
    records = read_metrics(metrics_path)
    series = [[(r["step"], r[key]) for r in records if key in r] for key, _ in panels]
    if not any(series):
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), dpi=100, squeeze=False)
    for ax, points, (_, label) in zip(axes[0], series, panels, strict=True):
        if points:
            ax.plot(*zip(*points, strict=True), "o-" if len(points) < 30 else "-", markersize=3)
        ax.set_xlabel("step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, png_path)
    plt.close(fig)
    return True
