"""Reading pictures back, for the picture tests (plots, look, ngram, networks, demo).

A picture is read back as RGB, each axes is found by its frame of near-black spines, each
plotted thing by its colour, a line is traced column by column, a colour-mapped cell is read back
to its value on the colour map. Tests import these as `from pixels import ...` (pyproject puts
tests/ on the path, so test files in subfolders find it too).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.image import imread

Frame = tuple[int, int, int, int]  # top, bottom, left, right: the pixel rows/columns of the spines
Bar = tuple[float, int, int]  # middle (across the bar), first and last pixel (along it)


def read_rgb(path: Path) -> np.ndarray:
    return imread(path)[..., :3].astype(np.float64)


def runs(flags: np.ndarray, min_len: int = 1) -> list[tuple[int, int]]:
    """(start, stop) of every run of True in a 1-D array that is at least `min_len` long."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    return [
        (int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= min_len
    ]


def frames(image: np.ndarray, min_size: int = 40, dark: float = 0.3) -> list[Frame]:
    """Every axes frame: a rectangle of near-black lines at least `min_size` pixels on each side,
    not inside another one; sorted row by row, left to right.

    Dark content (a black heatmap row, a tick mark on a spine) may lengthen a horizontal run or
    add one; a frame's sides must be unbroken vertical lines from its top to its bottom."""
    mask = image.max(axis=2) < dark
    light_above = np.vstack([np.zeros((1, mask.shape[1]), int), np.cumsum(~mask, axis=0)])
    rows = [set(runs(mask[r], min_size)) for r in range(mask.shape[0])] + [set()]
    # a thick line or a dark block repeats its run row after row: keep its first and last rows
    segments = [
        (r, a, b)
        for r in range(mask.shape[0])
        for a, b in sorted(rows[r])
        if (a, b) not in rows[r - 1] or (a, b) not in rows[r + 1]
    ]
    found = []
    for i, (top, a1, b1) in enumerate(segments):
        best = None
        for bottom, a2, b2 in segments[i + 1 :]:
            lo, hi = max(a1, a2), min(b1, b2)
            if bottom - top < min_size or hi - lo < min_size:
                continue
            light = light_above[bottom + 1, lo:hi] - light_above[top, lo:hi]
            sides = lo + np.flatnonzero(light <= 2)
            if len(sides) >= 2 and sides[0] - lo <= 8 and hi - 1 - sides[-1] <= 8:
                best = (top, bottom, int(sides[0]), int(sides[-1]))  # the tallest one
        if best:
            found.append(best)

    def within(f: Frame, g: Frame) -> bool:
        return f != g and g[0] <= f[0] and f[1] <= g[1] and g[2] <= f[2] and f[3] <= g[3]

    unique: list[Frame] = []
    for f in sorted(f for f in found if not any(within(f, g) for g in found)):
        if not any(max(abs(x - y) for x, y in zip(f, g, strict=True)) <= 2 for g in unique):
            unique.append(f)
    return sorted(unique, key=lambda f: (f[0] // 10, f[2]))


def axes_box(image: np.ndarray) -> Frame:
    """The frame of a picture with one axes (a twin axis shares it)."""
    found = frames(image)
    assert len(found) == 1, f"expected one axes frame, found {found}"
    return found[0]


def colour_mask(
    image: np.ndarray, colour: str | tuple, alpha: float = 1.0, tol: float = 0.12
) -> np.ndarray:
    """Pixels of `colour` drawn at `alpha` over white (antialiased edges excluded)."""
    target = alpha * np.array(to_rgb(colour)) + (1 - alpha)
    return np.abs(image - target).max(axis=2) < tol


def inside(mask: np.ndarray, box: Frame) -> np.ndarray:
    """The mask with everything on or outside the frame cleared."""
    top, bottom, left, right = box
    keep = np.zeros_like(mask)
    keep[top + 2 : bottom - 1, left + 2 : right - 1] = True
    return mask & keep


def cmap_value(pixel: np.ndarray, cmap: str) -> tuple[float, float]:
    """Where on colour map `cmap` the pixel's colour lies (0..1), and its distance from the map
    (0: exactly one of the map's 256 colours)."""
    table = matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3]
    distance = np.abs(table - pixel).max(axis=1)
    i = int(distance.argmin())
    return i / 255, float(distance[i])


def cell_centres(box: Frame, rows: int, cols: int) -> list[list[tuple[int, int]]]:
    """Pixel (row, column) of the centre of each cell of an image drawn to fill the frame."""
    top, bottom, left, right = box
    ys = top + (np.arange(rows) + 0.5) * (bottom - top) / rows
    xs = left + (np.arange(cols) + 0.5) * (right - left) / cols
    return [[(round(y), round(x)) for x in xs] for y in ys]


def bars(mask: np.ndarray, box: Frame, horizontal: bool, thickness: int = 8) -> list[Bar]:
    """The bars of one colour inside a frame, in order (top to bottom for horizontal bars, left
    to right for vertical ones): (middle, first, last) pixel columns of a horizontal bar (rows of
    a vertical one), `middle` across the bar, `first` and `last` along it.

    A bar is at least `thickness` pixels thick and 3 long (the antialiased strokes of text are
    neither); along its middle line grid lines may cross it (gaps of a pixel or two), and it
    ends before any text beside it."""
    top, bottom, left, right = box
    inner = mask[top + 1 : bottom, left + 1 : right]
    across, along = top + 1, left + 1
    if not horizontal:
        inner, across, along = inner.T, left + 1, top + 1
    solid = inner[:, :-2] & inner[:, 1:-1] & inner[:, 2:]  # 3 pixels in a row: not text
    found = []
    for a, b in runs(solid.any(axis=1), min_len=thickness):
        hits = np.flatnonzero(inner[(a + b) // 2])
        pieces = np.split(hits, np.flatnonzero(np.diff(hits) > 3) + 1)
        longest = max(pieces, key=len)
        found.append((across + (a + b - 1) / 2, along + int(longest[0]), along + int(longest[-1])))
    return found


def autoscaled(box: Frame, xs, ys, x_all, y_all) -> tuple[np.ndarray, np.ndarray]:
    """Pixel columns and rows of data points under matplotlib's default autoscaling: the range
    of all the data drawn (x_all, y_all), plus 5% at each end, fills the frame. (On a log axis,
    give the logarithms.)"""
    top, bottom, left, right = box

    def scale(v, data, lo_px: int, hi_px: int) -> np.ndarray:
        lo, hi = min(data), max(data)
        pad = 0.05 * (hi - lo)
        return lo_px + (np.asarray(v, float) - (lo - pad)) / (hi - lo + 2 * pad) * (hi_px - lo_px)

    return scale(xs, x_all, left, right), scale(ys, y_all, bottom, top)


def assert_markers(
    image: np.ndarray, box: Frame, series: list, min_checked: int, extra_y=(), extra_x=()
) -> None:
    """`series`: [(colour, xs, ys)] in drawing order, each point drawn with a marker; `extra_y`,
    `extra_x`: more data drawn on the axes (a horizontal line, a line without markers) that
    takes part in the autoscaling. Every marker that no later one covers is at its data
    position, in its series' colour."""
    x_all = [x for _, xs, _ in series for x in xs] + list(extra_x)
    y_all = [y for _, _, ys in series for y in ys] + list(extra_y)
    placed = [
        list(zip(*autoscaled(box, xs, ys, x_all, y_all), strict=True)) for _, xs, ys in series
    ]
    checked = 0
    for i, (colour, _, _) in enumerate(series):
        mask = colour_mask(image, colour, tol=0.1)
        later = [p for points in placed[i + 1 :] for p in points]
        for x, y in placed[i]:
            if any(abs(a - x) < 10 and abs(b - y) < 10 for a, b in later):
                continue
            x, y = round(x), round(y)
            assert mask[y - 3 : y + 4, x - 3 : x + 4].sum() >= 20, (colour, x, y)
            checked += 1
    assert checked >= min_checked, f"only {checked} markers could be checked"


def trace(mask: np.ndarray, max_jump: int = 30) -> dict[int, float]:
    """Follow a line from its leftmost pixel: column -> centre row of the line there.

    Where a column holds several runs of the colour (a legend sample, another crossing), the
    run nearest the line's previous row is taken; columns where the line is hidden are skipped.
    """
    rows: dict[int, float] = {}
    prev = None
    for col in range(mask.shape[1]):
        hits = np.flatnonzero(mask[:, col])
        if len(hits) == 0:
            continue
        pieces = np.split(hits, np.flatnonzero(np.diff(hits) > 2) + 1)
        centres = [float(piece.mean()) for piece in pieces]
        if prev is None:
            pick = centres[0]
        else:
            pick = min(centres, key=lambda y: abs(y - prev))
            if abs(pick - prev) > max_jump:
                continue
        rows[col] = pick
        prev = pick
    return rows


def assert_line_follows(
    image: np.ndarray,
    box: Frame,
    colour: str,
    alpha: float,
    values,
    y_all=None,
    log: bool = True,
    tol: float = 3.0,
    xs=None,
    end_tol: float = 3.0,
) -> None:
    """The line of `values` against `xs` (default 0, 1, ...; on a log y axis if `log`), drawn in
    `colour` at `alpha`, traced column by column: it runs the whole x range, and at each column
    it is within `tol` pixels of where default autoscaling over `y_all` (default: `values`)
    puts the data there (or the data one column either side, for where the line is steep).
    At most 5% of the columns (under a legend, a crossing line) may miss; its ends must be within
    `end_tol` pixels of the first and last x (more where a marker covers an end)."""
    ys = np.log10(values) if log else np.asarray(values, float)
    y_all = ys if y_all is None else (np.log10(y_all) if log else np.asarray(y_all, float))
    xs = np.arange(len(ys)) if xs is None else np.asarray(xs, float)
    line = trace(inside(colour_mask(image, colour, alpha), box))
    assert line, f"no {colour} line"
    cols, rows = autoscaled(box, xs, ys, xs, y_all)
    at = np.array(list(line), float)
    got = np.array(list(line.values()))
    lo = np.minimum(np.interp(at - 1, cols, rows), np.interp(at + 1, cols, rows)) - tol
    hi = np.maximum(np.interp(at - 1, cols, rows), np.interp(at + 1, cols, rows)) + tol
    assert ((got < lo) | (got > hi)).mean() <= 0.05, f"the {colour} line is elsewhere"
    assert abs(min(line) - cols[0]) <= end_tol and abs(max(line) - cols[-1]) <= end_tol, "not x's range"


def sample_at_steps(line: dict[int, float], steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The traced row at each step's column (the line's ends are the first and last step).

    Returns the rows and a mask of the steps where the line was visible (within 2 columns)."""
    first, last = min(line), max(line)
    cols = first + (last - first) * (steps - steps[0]) / (steps[-1] - steps[0])
    rows = np.full(len(steps), np.nan)
    for i, col in enumerate(np.rint(cols).astype(int)):
        near = [c for c in range(col - 2, col + 3) if c in line]
        if near:
            rows[i] = line[min(near, key=lambda c: abs(c - col))]
    return rows, ~np.isnan(rows)
