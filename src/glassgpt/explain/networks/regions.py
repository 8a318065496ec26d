"""Three regions of the plane: a network that says where a point (x, y) lies, and how sure it is.

The square [-1, 1]^2 is cut by curved boundaries into three regions: a disc in the middle, and
outside it the part above a wave and the part below it. A small network (tanh hidden layers,
softmax over 3 outputs) learns this from labelled random points, trained with PyTorch (Adam on
the cross-entropy, full batch, learning rate decaying linearly to 0). Its uncertainty at a point
is the entropy of its output probabilities, in bits (0 = certain, log2 3 = 1.58 = no idea); it is
high along the boundaries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from glassgpt.errors import GlassError

REGION_NAMES = ("disc", "above the wave", "below the wave")
RADIUS = 0.5
NEAR, FAR = 0.05, 0.2  # distance to the true boundary that counts as near / far
MAX_ENTROPY = math.log2(3)


def _wave(x: np.ndarray) -> np.ndarray:
    return 0.35 * np.sin(2.5 * x) - 0.1


def true_region(points: np.ndarray) -> np.ndarray:
    """The region index (0 disc, 1 above the wave, 2 below the wave) of each point (n, 2)."""
    x, y = points[:, 0], points[:, 1]
    inside = x**2 + y**2 < RADIUS**2
    return np.where(inside, 0, np.where(y > _wave(x), 1, 2))


def wave_boundary(resolution: int = 2000) -> np.ndarray:
    """Points along the wave where it is a boundary: outside the disc."""
    xs = np.linspace(-1, 1, resolution)
    wave = np.stack([xs, _wave(xs)], axis=1)
    return wave[(wave**2).sum(axis=1) >= RADIUS**2]


def distance_to_boundary(points: np.ndarray) -> np.ndarray:
    """Euclidean distance from each point to the nearest true boundary (to about 1e-3).

    Exact for the circle; for the wave, the distance to the nearest of 2,000 points along it.
    """
    points = np.asarray(points, dtype=np.float64)
    circle = np.abs(np.sqrt((points**2).sum(axis=1)) - RADIUS)
    wave = wave_boundary()
    out = np.empty(len(points))
    for start in range(0, len(points), 1024):  # in chunks: points x wave-points distances
        chunk = points[start : start + 1024]
        d2 = ((chunk[:, None, :] - wave[None, :, :]) ** 2).sum(axis=2)
        out[start : start + 1024] = np.sqrt(d2.min(axis=1))
    return np.minimum(circle, out)


@dataclass(frozen=True)
class PointSet:
    """Random points in [-1, 1]^2 with their true regions."""

    points: np.ndarray  # (n, 2) float32
    labels: np.ndarray  # (n,) int64


def make_points(n: int, seed: int) -> PointSet:
    """`n` points uniform in the square, labelled by `true_region`."""
    if n < 1:
        raise GlassError(f"number of points must be positive, got {n}")
    rng = np.random.default_rng(seed)
    points = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    return PointSet(points, true_region(points).astype(np.int64))


def build_net(layers: int, width: int) -> torch.nn.Sequential:
    """2 inputs -> `layers` hidden layers of `width` tanh neurons -> 3 output scores."""
    if layers < 1 or width < 1:
        raise GlassError(f"the network needs at least 1 layer of 1 neuron, got {layers}x{width}")
    if layers > 16 or width > 1024:
        raise GlassError(f"at most 16 layers of 1024 neurons, got {layers}x{width}")
    modules: list[torch.nn.Module] = []
    size = 2
    for _ in range(layers):
        modules += [torch.nn.Linear(size, width), torch.nn.Tanh()]
        size = width
    modules.append(torch.nn.Linear(size, len(REGION_NAMES)))
    return torch.nn.Sequential(*modules)


@dataclass(frozen=True)
class RegionsResult:
    """A trained regions network and how it did."""

    net: torch.nn.Sequential
    layers: int
    width: int
    losses: np.ndarray  # training loss per step
    final_loss: float  # training loss after the last step
    test_accuracy: float


def probabilities(net: torch.nn.Sequential, points: np.ndarray) -> np.ndarray:
    """The network's probabilities of the three regions for each point (n, 3)."""
    with torch.no_grad():
        logits = net(torch.as_tensor(points, dtype=torch.float32))
        return torch.softmax(logits, dim=1).double().numpy()


def entropy_bits(probs: np.ndarray) -> np.ndarray:
    """Uncertainty of each prediction: the entropy of its probabilities, in bits."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log2(p)).sum(axis=1)


def train_regions(
    layers: int = 3,
    width: int = 32,
    steps: int = 1000,
    lr: float = 0.02,
    seed: int = 0,
    n_train: int = 2000,
    n_test: int = 3000,
) -> RegionsResult:
    """Train one network with Adam (full batch, learning rate decaying linearly to 0), with
    fixed seeds for the data and the weights."""
    if steps < 1:
        raise GlassError(f"steps must be at least 1, got {steps}")
    if not lr > 0:
        raise GlassError(f"learning rate must be positive, got {lr}")
    train_set = make_points(n_train, seed)
    test_set = make_points(n_test, seed + 10_000)
    torch.manual_seed(seed)
    net = build_net(layers, width)
    x = torch.as_tensor(train_set.points)
    y = torch.as_tensor(train_set.labels)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    # the step size falls linearly to 0: at a constant rate Adam's loss keeps spiking late on
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    losses = np.empty(steps)
    for step in range(steps):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses[step] = loss.item()
    with torch.no_grad():
        final = float(torch.nn.functional.cross_entropy(net(x), y))
    predicted = probabilities(net, test_set.points).argmax(axis=1)
    accuracy = float((predicted == test_set.labels).mean())
    return RegionsResult(net, layers, width, losses, final, accuracy)


@dataclass(frozen=True)
class Uncertainty:
    """Mean entropy of the predictions near the true boundaries and far from them."""

    near: float  # bits, points closer than NEAR to a boundary
    far: float  # bits, points farther than FAR
    near_points: int
    far_points: int


def uncertainty_near_far(net: torch.nn.Sequential, points: np.ndarray) -> Uncertainty:
    """The effect in one pair of numbers: the network hesitates near the boundaries."""
    entropy = entropy_bits(probabilities(net, points))
    distance = distance_to_boundary(points)
    near, far = distance < NEAR, distance > FAR
    return Uncertainty(
        float(entropy[near].mean()), float(entropy[far].mean()), int(near.sum()), int(far.sum())
    )


@dataclass(frozen=True)
class PlaneMap:
    """Predictions on a grid over the square, for the picture."""

    xs: np.ndarray  # grid coordinates along x (and y: the grid is square)
    region: np.ndarray  # (res, res) predicted region, rows = y
    entropy: np.ndarray  # (res, res) bits
    truth: np.ndarray  # (res, res) true region


def plane_map(net: torch.nn.Sequential, resolution: int = 240) -> PlaneMap:
    """The predicted region and uncertainty at every point of a resolution x resolution grid."""
    xs = np.linspace(-1, 1, resolution)
    gx, gy = np.meshgrid(xs, xs)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    probs = probabilities(net, points)
    shape = (resolution, resolution)
    return PlaneMap(
        xs,
        probs.argmax(axis=1).reshape(shape),
        entropy_bits(probs).reshape(shape),
        true_region(points).reshape(shape),
    )


@dataclass(frozen=True)
class SweepRow:
    """One network size of the sweep."""

    layers: int
    width: int
    parameters: int
    final_loss: float
    test_accuracy: float


def sweep(
    layers: Sequence[int],
    widths: Sequence[int],
    steps: int = 500,
    lr: float = 0.03,
    seed: int = 0,
    n_train: int = 1000,
) -> list[SweepRow]:
    """Train every layers x widths network on the same data with the same seed."""
    rows = []
    for n_layers in layers:
        for width in widths:
            result = train_regions(n_layers, width, steps, lr, seed, n_train)
            n_params = sum(p.numel() for p in result.net.parameters())
            rows.append(
                SweepRow(n_layers, width, n_params, result.final_loss, result.test_accuracy)
            )
    return rows


def parse_sizes(text: str, what: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4]; every size a positive integer."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise GlassError(
            f"{what} must be positive whole numbers like 1,2,4, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise GlassError(f"{what} must be positive whole numbers like 1,2,4, got {text!r}")
    return sizes
