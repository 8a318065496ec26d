"""The training loss curve: the PNG's plotted lines have the shape of the metrics they draw.

plots.py draws train loss in tab:blue at alpha 0.7, validation loss in tab:orange and validation
bits per byte in tab:green (alpha 0.8) on a second axis. The pixel helpers live in pixels.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from glassgpt.plots import plot_loss_curve
from pixels import axes_box, colour_mask, inside, read_rgb, sample_at_steps, trace

TRAIN = ("tab:blue", 0.7)
VAL = ("tab:orange", 1.0)
BPB = ("tab:green", 0.8)
BUMP = 650  # the step where the synthetic train loss has its bump

# ---------------------------------------------------------------------------------------------
# The loss curve
# ---------------------------------------------------------------------------------------------


def write_metrics(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def bumpy_records() -> list[dict]:
    """Train loss falling as 5 exp(-s/250) + 1.5 with a bump of +1 around step 650, every 10
    steps from 0 to 1000; validation (base + 0.4, and bits per byte) at steps 50, 150, ..., 950.

    At step 650 the bump lifts train loss above validation loss; everywhere else it is below."""
    records = []
    for step in range(0, 1001, 10):
        base = 5 * math.exp(-step / 250) + 1.5
        record = {"step": step, "train_loss": base + math.exp(-(((step - BUMP) / 40) ** 2))}
        if step % 100 == 50:
            record["val_loss"] = base + 0.4
            record["val_bpb"] = 0.4 * record["val_loss"]
        records.append(record)
    return records


@pytest.fixture(scope="module")
def bumpy(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], np.ndarray]:
    folder = tmp_path_factory.mktemp("plots")
    records = bumpy_records()
    png = folder / "loss_curve.png"
    assert plot_loss_curve(write_metrics(folder / "metrics.jsonl", records), png) is True
    return records, read_rgb(png)


def test_the_train_line_has_the_shape_of_the_train_loss(bumpy):
    records, image = bumpy
    assert image.shape[:2] == (450, 800)  # figsize 8 x 4.5 inches at 100 dpi
    box = axes_box(image)
    top, bottom, left, right = box
    height = bottom - top
    line = trace(inside(colour_mask(image, *TRAIN), box))
    assert line, "no train line"
    # the line runs across the whole step range: matplotlib leaves a 5% margin at each side
    assert max(line) - min(line) > 0.85 * (right - left)
    steps = np.array([r["step"] for r in records], dtype=float)
    loss = np.array([r["train_loss"] for r in records])
    rows, seen = sample_at_steps(line, steps)
    assert seen.mean() > 0.8, "the train line is hidden or missing at too many steps"
    # the traced rows are an affine image of the losses (higher loss = higher up = smaller row)
    slope, offset = np.polyfit(loss[seen], rows[seen], 1)
    assert slope < 0
    assert np.abs(rows[seen] - (slope * loss[seen] + offset)).max() < 0.02 * height
    # and, said plainly: the left end is high and the right end low ...
    assert rows[seen][0] < top + 0.25 * height and rows[seen][-1] > bottom - 0.15 * height
    # ... it only goes down where the loss only goes down (0..550 and 750..1000) ...
    for lo, hi in ((0, 550), (750, 1000)):
        part = rows[seen & (steps >= lo) & (steps <= hi)]
        assert len(part) > 10 and np.all(np.diff(part) >= -1.0), (lo, hi)
    # ... and the bump is a local peak at step 650
    window = seen & (steps >= 550) & (steps <= 750)
    assert steps[window][np.argmin(rows[window])] == pytest.approx(BUMP, abs=10)
    assert rows[window].min() < min(rows[window][0], rows[window][-1]) - 0.1 * height


def test_validation_points_share_the_loss_axis(bumpy):
    records, image = bumpy
    box = axes_box(image)
    train_line = trace(inside(colour_mask(image, *TRAIN), box))
    orange = inside(colour_mask(image, *VAL), box)
    steps = np.array([r["step"] for r in records], dtype=float)
    first, last = min(train_line), max(train_line)
    val = [r for r in records if "val_loss" in r]
    val_rows = []
    for r in val:
        col = round(first + (last - first) * (r["step"] - steps[0]) / (steps[-1] - steps[0]))
        hits = np.flatnonzero(orange[:, col - 1 : col + 2].any(axis=1))
        assert len(hits), f"no validation marker at step {r['step']}"
        val_rows.append(float(np.median(hits)))
        train_rows = [train_line[c] for c in range(col - 3, col + 4) if c in train_line]
        if train_rows:  # validation loss is above train loss except at the bump
            above = val_rows[-1] < np.mean(train_rows)
            assert above == (r["step"] != BUMP), r["step"]
    # validation loss falls at every point, and so do the markers
    assert np.all(np.diff(val_rows) > 0)
    assert np.any(inside(colour_mask(image, *BPB), box))  # the bits-per-byte line is drawn


def test_a_flat_loss_is_a_flat_line_and_no_validation_means_no_validation_lines(tmp_path):
    records = [{"step": s, "train_loss": 3.0} for s in range(0, 500, 5)]
    png = tmp_path / "flat.png"
    assert plot_loss_curve(write_metrics(tmp_path / "metrics.jsonl", records), png) is True
    image = read_rgb(png)
    box = axes_box(image)
    top, bottom, left, right = box
    line = trace(inside(colour_mask(image, *TRAIN), box))
    assert max(line) - min(line) > 0.85 * (right - left)
    rows = np.array(list(line.values()))
    assert rows.max() - rows.min() <= 2  # horizontal ...
    assert abs(np.median(rows) - (top + bottom) / 2) < 0.1 * (bottom - top)  # ... and centred
    assert not inside(colour_mask(image, *VAL), box).any()
    assert not inside(colour_mask(image, *BPB), box).any()


def test_no_metrics_draws_nothing(tmp_path):
    png = tmp_path / "loss_curve.png"
    assert plot_loss_curve(tmp_path / "missing.jsonl", png) is False
    empty = tmp_path / "metrics.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    assert plot_loss_curve(empty, png) is False
    assert not png.exists()
