"""Three regions: the regions, training, uncertainty near the boundaries, the size sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from glassgpt.cli import main
from glassgpt.errors import GlassError
from glassgpt.explain.networks import regions as reg


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained() -> reg.RegionsResult:
    torch.set_num_threads(1)
    return reg.train_regions(seed=0)  # the command's default network


def assert_picture(path: Path) -> None:
    image = imread(path)
    assert image.shape[0] >= 200 and image.shape[1] >= 300
    assert float(image[..., :3].std()) > 0.05


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
    argv += ["--sweep-widths", "2,8", "--sweep-steps", "100", "--sweep-points", "300"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Test accuracy:" in printed and "near a boundary" in printed
    assert "final loss" in printed
    for name in ("regions_map.png", "regions_loss.png", "regions_sweep.png"):
        assert_picture(out / name)


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
