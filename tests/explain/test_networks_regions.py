"""Three regions: the regions, training, uncertainty near the boundaries, the size sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import LogNorm

from glassgpt.cli import main
from glassgpt.errors import GlassError
from glassgpt.explain.networks import regions as reg
from glassgpt.explain.networks.draw import REGION_COLOURS
from pixels import (  # the pixel helpers of the picture tests
    assert_line_follows,
    assert_markers,
    axes_box,
    cmap_value,
    frames,
    read_rgb,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained() -> reg.RegionsResult:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return reg.train_regions(seed=0)  # the command's default network
    finally:
        torch.set_num_threads(before)


def assert_regions_map(path: Path, pm: reg.PlaneMap) -> None:
    """Left: every point of the plane in its predicted region's colour, darkened by the network's
    doubt, with a legend at the lower left; right: the doubt itself (entropy, magma, log scale),
    under the true boundaries (cyan dashes). A cell of the map is 1.6 pixels: a pixel shows its
    own cell's colour or a neighbour's."""
    image = read_rgb(path)
    left, right = frames(image)
    n = len(pm.xs)
    doubt = (np.clip(pm.entropy / reg.MAX_ENTROPY, 0, 1) ** 0.35)[..., None]
    colours = REGION_COLOURS[pm.region] * (1 - doubt) + 0.15 * doubt
    norm = LogNorm(vmin=1e-4, vmax=reg.MAX_ENTROPY)
    top, bottom, x0, x1 = left
    light = image[top + 2 : bottom - 1, x0 + 2 : x1 - 1].min(axis=2) > 0.8  # the legend's box
    ys, xs = np.nonzero(light)
    ly0, ly1, lx0, lx1 = (
        top + ys.min() - 1,
        top + ys.max() + 5,
        x0 + xs.min() - 1,
        x0 + xs.max() + 5,
    )
    assert ly0 > (top + bottom) / 2 and lx1 < (x0 + x1) / 2  # at the lower left
    grid = range(4, n - 1, 8)
    checked = 0
    for gi in grid:  # y, from the bottom (origin="lower")
        for gj in grid:
            near = (slice(gi - 1, gi + 2), slice(gj - 1, gj + 2))
            top, bottom, x0, x1 = left
            y = round(bottom - (gi + 0.5) / n * (bottom - top))
            x = round(x0 + (gj + 0.5) / n * (x1 - x0))
            if ly0 <= y <= ly1 and lx0 <= x <= lx1:
                continue
            miss = np.abs(colours[near].reshape(-1, 3) - image[y, x]).max(axis=1).min()
            assert miss < 0.1, ("map", pm.xs[gj], pm.xs[gi])
            top, bottom, x0, x1 = right
            y = round(bottom - (gi + 0.5) / n * (bottom - top))
            x = round(x0 + (gj + 0.5) / n * (x1 - x0))
            value, off_map = cmap_value(image[y, x], "magma")
            if off_map > 0.05:  # a cyan boundary
                continue
            values = norm(np.clip(pm.entropy[near], 1e-4, None))
            at = ("doubt", pm.xs[gj], pm.xs[gi])
            assert values.min() - 0.04 < value < values.max() + 0.04, at
            checked += 1
    assert checked > 0.8 * len(grid) ** 2


def assert_sweep_png(path: Path, rows: list[tuple[int, int, float, float]]) -> None:
    """Final loss (log) and test accuracy (%) against width (log 2), a line per layer count."""
    image = read_rgb(path)
    left, right = frames(image)
    layers = sorted({r[0] for r in rows})
    for box, y_of in ((left, lambda r: np.log10(max(r[2], 1e-6))), (right, lambda r: r[3])):
        series = [
            (
                f"C{k}",
                [np.log2(r[1]) for r in rows if r[0] == n],
                [y_of(r) for r in rows if r[0] == n],
            )
            for k, n in enumerate(layers)
        ]
        assert_markers(image, box, series, min_checked=len(rows) - 1)


def test_regions_and_boundary_distance():
    points = np.array([[0.0, 0.0], [0.0, 0.9], [0.0, -0.9], [0.49, 0.0], [-0.9, 0.9]])
    assert reg.true_region(points).tolist() == [0, 1, 2, 0, 1]
    d = reg.distance_to_boundary(points)
    assert d[0] == pytest.approx(0.5, abs=1e-3)  # centre of the disc
    assert d[3] == pytest.approx(0.01, abs=1e-3)  # just inside the circle
    x = 0.8  # straight above a point of the wave, outside the disc
    wave_y = 0.35 * np.sin(2.5 * x) - 0.1
    assert reg.distance_to_boundary(np.array([[x, wave_y]]))[0] < 1e-3
    labels = reg.make_points(5000, seed=1).labels
    assert np.bincount(labels, minlength=3).min() > 500  # all three regions are sizeable


def test_network_beats_90_percent(trained):
    assert trained.test_accuracy > 0.90
    assert trained.losses[-1] < trained.losses[0] / 10


def test_uncertainty_is_higher_near_the_boundaries(trained):
    points = reg.make_points(10_000, seed=7).points
    u = reg.uncertainty_near_far(trained.net, points)
    assert u.near_points > 500 and u.far_points > 3000
    assert u.near > 10 * u.far
    assert u.near > 0.02
    grid = reg.plane_map(trained.net, resolution=60)
    assert grid.entropy.max() <= reg.MAX_ENTROPY + 1e-9
    assert (grid.region == grid.truth).mean() > 0.9


def test_larger_networks_fit_better():
    rows = reg.sweep([1, 2], [2, 16], steps=300, seed=0, n_train=600)
    loss = {(r.layers, r.width): r.final_loss for r in rows}
    assert loss[(1, 16)] < loss[(1, 2)] / 2
    assert loss[(2, 16)] < loss[(1, 2)] / 2
    params = {(r.layers, r.width): r.parameters for r in rows}
    assert params[(1, 2)] == 2 * 2 + 2 + 2 * 3 + 3


def test_bad_sizes_are_glass_errors():
    for layers, width in ((0, 4), (2, 0), (-1, 3)):
        with pytest.raises(GlassError):
            reg.build_net(layers, width)
    for text in ("", "2,x", "0,2", "-4"):
        with pytest.raises(GlassError):
            reg.parse_sizes(text, "--sweep-widths")


def test_command_prints_and_writes_pictures(capsys, tmp_path):
    out = tmp_path / "regions"
    argv = ["nn", "regions", "--steps", "200", "--points", "500", "--sweep-layers", "1,2"]
    argv += ["--sweep-widths", "2,4,16", "--sweep-steps", "100", "--sweep-points", "300"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Test accuracy:" in printed and "near a boundary" in printed
    assert "final loss" in printed
    # the same network again (the command's defaults, its --steps and --points, seed 0)
    result = reg.train_regions(3, 32, 200, 0.02, 0, 500)
    assert f"step 199 {result.losses[199]:.4f}" in printed
    assert_regions_map(out / "regions_map.png", reg.plane_map(result.net))
    image = read_rgb(out / "regions_loss.png")
    assert_line_follows(image, axes_box(image), "C0", 1.0, result.losses)
    # the sweep's table: layers, width, parameters, final loss, test accuracy (%)
    table = [line.split() for line in printed.splitlines() if line.endswith("%")]
    rows = [(int(t[0]), int(t[1]), float(t[3]), float(t[4][:-1])) for t in table]
    assert sorted((r[0], r[1]) for r in rows) == [(n, w) for n in (1, 2) for w in (2, 4, 16)]
    assert_sweep_png(out / "regions_sweep.png", rows)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--width", "0"], "--width"),
        (["--layers", "-2"], "--layers"),
        (["--sweep-widths", "2,zero"], "--sweep-widths"),
        (["--sweep-layers", "0"], "--sweep-layers"),
        (["--steps", "0"], "--steps"),
    ],
)
def test_command_rejects_bad_sizes_in_one_line(argv, message, capsys, tmp_path):
    assert main(["nn", "regions", *argv, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
