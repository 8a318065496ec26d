"""The 3x3 symbol network: data, the forward pass, hand-written backprop, training, the command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from glassgpt.cli import main
from glassgpt.errors import GlassError
from glassgpt.explain.networks import symbols as sym
from pixels import (  # the pixel helpers of the picture tests
    assert_line_follows,
    axes_box,
    cell_centres,
    cmap_value,
    colour_mask,
    frames,
    read_rgb,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data() -> sym.SymbolData:
    return sym.make_dataset(seed=0)


def assert_examples_png(path: Path, data: sym.SymbolData, predicted: np.ndarray) -> None:
    """A row per symbol: its clean drawing, then its first 7 test drawings, every pixel black or
    white as in the data; each test drawing titled in green when the answer is right, in red
    when it is wrong."""
    image = read_rgb(path)
    panels = frames(image, dark=0.7)  # the drawings' frames are grey
    assert len(panels) == 4 * 8
    for k, box in enumerate(panels):
        symbol, col = divmod(k, 8)
        if col == 0:
            want = sym.symbol_pixels(sym.NAMES[symbol])
        else:
            i = np.flatnonzero(data.y_test == symbol)[col - 1]
            want = data.x_test[i]
            title = image[box[0] - 20 : box[0] - 2, box[2] : box[3]]
            right = predicted[i] == symbol
            assert colour_mask(title, "green" if right else "red", tol=0.15).sum() > 5, k
            assert not colour_mask(title, "red" if right else "green", tol=0.15).any(), k
        cells = [image[y, x] for row in cell_centres(box, 3, 3) for y, x in row]
        got = [1.0 if c.min() > 0.8 else -1.0 if c.max() < 0.2 else 0.0 for c in cells]
        assert got == want.tolist(), (sym.NAMES[symbol], col, got)


def assert_first_layer_png(path: Path, w1: np.ndarray) -> None:
    """Each first-layer neuron's 9 weights as a 3 x 3 square (RdBu, -max|W1|..+max|W1|): every
    cell's colour reads back to its weight."""
    image = read_rgb(path)
    panels = frames(image)  # the network drawing beside them has no frames
    assert len(panels) == len(w1) == 16
    limit = np.abs(w1).max()
    for k, box in enumerate(panels):
        cells = [image[y, x] for row in cell_centres(box, 3, 3) for y, x in row]
        for j, cell in enumerate(cells):
            value, miss = cmap_value(cell, "RdBu")
            assert miss < 0.03, (k, j)
            assert -limit + 2 * limit * value == pytest.approx(w1[k, j], abs=0.02 * limit), (k, j)


def test_dataset_is_noisy_symbols_split_without_overlap(data):
    clean = np.stack([sym.symbol_pixels(n) for n in sym.NAMES])
    assert set(np.unique(np.concatenate([data.x_train, data.x_test]))) == {-1.0, 1.0}
    assert set(data.y_train) == set(data.y_test) == {0, 1, 2, 3}
    train = {tuple(x) for x in data.x_train}
    assert not train & {tuple(x) for x in data.x_test}  # no drawing in both
    for x, y, f in zip(data.x_test, data.y_test, data.flips_test, strict=True):
        distances = (x != clean).sum(axis=1)
        assert distances[y] == f and distances[y] < np.delete(distances, y).min()
    assert len(data.y_test) >= 60 and len(data.y_train) >= 60
    # the clean symbols differ in at least 4 pixels pairwise: one flip never confuses them
    d = (clean[:, None, :] != clean[None, :, :]).sum(axis=2)
    assert d[~np.eye(4, dtype=bool)].min() >= 4


def test_forward_pass_is_the_network_of_the_explanation():
    net = sym.SymbolNet.create((16, 8), seed=1)
    assert net.W1.shape == (16, 9) and net.W2.shape == (8, 16) and net.W3.shape == (4, 8)
    for w in (net.W1, net.W2, net.W3):
        assert -1 <= w.min() and w.max() <= 1  # weights start in -1..1
    x = np.random.default_rng(0).choice([-1.0, 1.0], size=(20, 9))
    acts = sym.forward(net, x)
    assert np.allclose(acts.h1, np.tanh(x @ net.W1.T + net.b1))
    assert -1 < acts.h1.min() and acts.h1.max() < 1
    assert 0 < acts.h2.min() and acts.h2.max() < 1  # the last hidden layer: sigmoid
    assert np.allclose(acts.p.sum(axis=1), 1.0) and acts.p.min() > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hand_written_gradients_equal_autograd(data, seed):
    net = sym.SymbolNet.create((7, 5), seed=seed)
    rng = np.random.default_rng(seed)
    for name in ("b1", "b2", "b3"):  # non-zero biases, so their gradients are exercised too
        getattr(net, name)[...] = rng.uniform(-1, 1, getattr(net, name).shape)
    x, y = data.x_train, data.y_train
    hand = sym.backward(net, sym.forward(net, x), y)
    auto = sym.torch_gradients(net, x, y)
    assert hand.loss == pytest.approx(auto.loss, abs=1e-12)
    for name in sym.SymbolNet.PARAMS:
        assert hand.get(name).shape == getattr(net, name).shape
        np.testing.assert_allclose(hand.get(name), auto.get(name), rtol=0, atol=1e-6)
    # and one finite difference, independent of both
    eps = 1e-6
    net.W1[2, 4] += eps
    up = sym.loss_of(sym.forward(net, x), y)
    net.W1[2, 4] -= 2 * eps
    down = sym.loss_of(sym.forward(net, x), y)
    assert (up - down) / (2 * eps) == pytest.approx(hand.W1[2, 4], abs=1e-7)


def test_training_reaches_95_percent_on_test_drawings(data):
    result = sym.train(data, seed=0)
    assert result.losses[-1] < result.losses[0] / 20  # the loss curve goes down
    assert result.test_accuracy >= 0.95
    assert result.train_accuracy == 1.0


def test_explained_gradients_match_autograd(data):
    result = sym.train(data, steps=200, seed=0)
    grads = sym.explain_gradients(result.net, data.x_test[3], int(data.y_test[3]))
    assert [g.name[:2] for g in grads] == ["W3", "W2", "W1"]
    for g in grads:
        assert g.hand == pytest.approx(g.autograd, abs=1e-9)


def test_bad_sizes_are_glass_errors():
    for text in ("0,3", "8", "a,b", "8,6,4"):
        with pytest.raises(GlassError):
            sym.parse_hidden(text)
    with pytest.raises(GlassError):
        sym.train(sym.make_dataset(), steps=0)


def test_command_explains_and_writes_pictures(capsys, tmp_path, data):
    out = tmp_path / "sym"
    assert main(["nn", "symbols", "--explain", "--example", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy 100.0%" in printed or "test accuracy 9" in printed
    assert "hidden layer 1: z1 = W1 x + b1, h1 = tanh(z1)" in printed
    assert "h2 = sigmoid(z2)" in printed and "-> answer" in printed
    assert "dL/dW3" in printed and "dL/dW1" in printed
    # the same training again: the command's defaults (hidden 16,8, 2000 steps, lr 1, seed 0,
    # weight decay 0.003) on the same data
    result = sym.train(data, (16, 8), 2000, 1.0, 0, 0.003)
    assert f"1999 {result.losses[1999]:11.4f} {result.test_losses[1999]:10.4f}" in printed
    image = read_rgb(out / "symbols_loss.png")
    both = np.concatenate([result.losses, result.test_losses])
    assert_line_follows(image, axes_box(image), "C0", 1.0, result.losses, both)
    assert_line_follows(image, axes_box(image), "C1", 0.8, result.test_losses, both)
    assert_first_layer_png(out / "symbols_network.png", result.net.W1)
    assert_examples_png(out / "symbols_test.png", data, sym.predict(result.net, data.x_test))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--hidden", "0,4"], "--hidden"),
        (["--hidden", "x"], "--hidden"),
        (["--steps", "0"], "--steps"),
        (["--lr", "-1"], "--lr"),
        (["--example", "9999"], "--example"),
    ],
)
def test_command_rejects_bad_options_in_one_line(argv, message, capsys, tmp_path):
    assert main(["nn", "symbols", *argv, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
