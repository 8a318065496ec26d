"""The 3x3 symbol recogniser of the explanation, with backpropagation written out by hand.

The network: 9 inputs, one per pixel (1 = white, -1 = black); a first hidden layer squashing
with tanh to -1..1; a second (last) hidden layer squashing with a sigmoid to 0..1; 4 outputs, one
per symbol, turned into probabilities by a softmax; the most probable symbol is the answer.
Weights start uniformly in -1..1, biases at 0.

Training is plain full-batch gradient descent on the cross-entropy loss, with the gradients from
the hand-written backward pass below (the chain rule, in numpy). `torch_gradients` computes the
same gradients with PyTorch autograd so the two can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from glassgpt.errors import GlassError

# "#" = ink (black, -1), "." = paper (white, 1). Chosen so that any two symbols differ in at
# least 4 pixels: one flipped pixel never makes a symbol look like another. ("|" would be a bad
# choice next to "+": they differ in only 2 pixels, so one flip makes them a tie.)
SYMBOLS: dict[str, str] = {
    "X": "#.# .#. #.#",
    "O": "### #.# ###",
    "+": ".#. ### .#.",
    "T": "### .#. .#.",
}
NAMES = list(SYMBOLS)
DEFAULT_HIDDEN = (16, 8)
WHITE, BLACK = 1.0, -1.0


def symbol_pixels(name: str) -> np.ndarray:
    """The 9 pixel values of a clean symbol, row by row (1 = white, -1 = black)."""
    return np.array([BLACK if ch == "#" else WHITE for ch in SYMBOLS[name].replace(" ", "")])


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SymbolData:
    """Noisy 3x3 drawings of the symbols, split into training and test sets."""

    x_train: np.ndarray  # (n, 9) pixel values
    y_train: np.ndarray  # (n,) symbol index into NAMES
    x_test: np.ndarray
    y_test: np.ndarray
    flips_train: np.ndarray  # how many pixels were flipped in each drawing
    flips_test: np.ndarray


def make_dataset(seed: int = 0, test_fraction: float = 0.5) -> SymbolData:
    """Each symbol clean, with every 1-pixel flip and every 2-pixel flip, split at random.

    A noisy drawing is kept only if it is still strictly closer (fewer differing pixels) to its
    own symbol than to any other: a drawing halfway between two symbols has no right answer.
    Clean drawings always go to training; the rest are split per symbol.
    """
    if not 0.0 < test_fraction < 1.0:
        raise GlassError(f"test fraction must be between 0 and 1, got {test_fraction}")
    rng = np.random.default_rng(seed)
    clean = np.stack([symbol_pixels(name) for name in NAMES])
    train: list[tuple[np.ndarray, int, int]] = []
    test: list[tuple[np.ndarray, int, int]] = []
    for label, pixels in enumerate(clean):
        train.append((pixels, label, 0))
        noisy = []
        for flips in (1, 2):
            for where in combinations(range(9), flips):
                drawing = pixels.copy()
                drawing[list(where)] *= -1
                distances = (drawing != clean).sum(axis=1)
                others = np.delete(distances, label)
                if distances[label] < others.min():
                    noisy.append((drawing, label, flips))
        order = rng.permutation(len(noisy))
        n_test = int(round(test_fraction * len(noisy)))
        test += [noisy[i] for i in order[:n_test]]
        train += [noisy[i] for i in order[n_test:]]

    def stack(items: list[tuple[np.ndarray, int, int]]) -> tuple[np.ndarray, ...]:
        return (
            np.stack([x for x, _, _ in items]),
            np.array([y for _, y, _ in items]),
            np.array([f for _, _, f in items]),
        )

    x_tr, y_tr, f_tr = stack(train)
    x_te, y_te, f_te = stack(test)
    return SymbolData(x_tr, y_tr, x_te, y_te, f_tr, f_te)


# ---------------------------------------------------------------------------------------------
# The network, forward and backward by hand
# ---------------------------------------------------------------------------------------------


@dataclass
class SymbolNet:
    """Weights and biases: W1 (h1 x 9), W2 (h2 x h1), W3 (4 x h2); row = receiving neuron."""

    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    W3: np.ndarray
    b3: np.ndarray

    PARAMS = ("W1", "b1", "W2", "b2", "W3", "b3")

    @staticmethod
    def create(hidden: tuple[int, int] = DEFAULT_HIDDEN, seed: int = 0) -> SymbolNet:
        """A new network with weights uniform in -1..1 and zero biases."""
        h1, h2 = hidden
        if h1 < 1 or h2 < 1:
            raise GlassError(f"hidden layer sizes must be positive, got {h1},{h2}")
        rng = np.random.default_rng(seed)
        return SymbolNet(
            W1=rng.uniform(-1, 1, (h1, 9)),
            b1=np.zeros(h1),
            W2=rng.uniform(-1, 1, (h2, h1)),
            b2=np.zeros(h2),
            W3=rng.uniform(-1, 1, (len(NAMES), h2)),
            b3=np.zeros(len(NAMES)),
        )

    def params(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.PARAMS}


@dataclass(frozen=True)
class Activations:
    """Every neuron's value for a batch: z = weighted sum + bias, then the squashed value."""

    x: np.ndarray  # inputs (B, 9)
    z1: np.ndarray
    h1: np.ndarray  # tanh(z1), in -1..1
    z2: np.ndarray
    h2: np.ndarray  # sigmoid(z2), in 0..1
    z3: np.ndarray  # output scores (logits)
    p: np.ndarray  # softmax(z3): probabilities of the 4 symbols


@dataclass(frozen=True)
class Gradients:
    """dLoss/d(parameter) for every weight and bias, same shapes as in `SymbolNet`."""

    loss: float
    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    W3: np.ndarray
    b3: np.ndarray

    def get(self, name: str) -> np.ndarray:
        return getattr(self, name)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def forward(net: SymbolNet, x: np.ndarray) -> Activations:
    """Values flow from the inputs through the two hidden layers to the output probabilities."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    z1 = x @ net.W1.T + net.b1
    h1 = np.tanh(z1)
    z2 = h1 @ net.W2.T + net.b2
    h2 = _sigmoid(z2)
    z3 = h2 @ net.W3.T + net.b3
    return Activations(x, z1, h1, z2, h2, z3, _softmax(z3))


def loss_of(acts: Activations, y: np.ndarray) -> float:
    """Cross-entropy: the mean of -ln p(correct symbol)."""
    y = np.atleast_1d(y)
    return float(-np.log(acts.p[np.arange(len(y)), y]).mean())


def backward(net: SymbolNet, acts: Activations, y: np.ndarray) -> Gradients:
    """The chain rule, layer by layer from the loss back to the first weights.

    Each step multiplies the gradient arriving at a layer's output by the local derivative:
    softmax + cross-entropy gives p - onehot; a weight's gradient is (gradient at the neuron it
    feeds) x (the value it carries); tanh' = 1 - h^2; sigmoid' = h (1 - h).
    """
    y = np.atleast_1d(y)
    batch = len(y)
    onehot = np.eye(len(NAMES))[y]
    dz3 = (acts.p - onehot) / batch  # dL/dz3: softmax and cross-entropy together
    dW3 = dz3.T @ acts.h2
    db3 = dz3.sum(axis=0)
    dh2 = dz3 @ net.W3  # each hidden neuron collects the gradient of every output it feeds
    dz2 = dh2 * acts.h2 * (1.0 - acts.h2)  # through the sigmoid
    dW2 = dz2.T @ acts.h1
    db2 = dz2.sum(axis=0)
    dh1 = dz2 @ net.W2
    dz1 = dh1 * (1.0 - acts.h1**2)  # through the tanh
    dW1 = dz1.T @ acts.x
    db1 = dz1.sum(axis=0)
    return Gradients(loss_of(acts, y), dW1, db1, dW2, db2, dW3, db3)


def torch_gradients(net: SymbolNet, x: np.ndarray, y: np.ndarray) -> Gradients:
    """The same gradients from PyTorch autograd (float64), to check the hand-written ones."""
    import torch

    params = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in net.params().items()
    }
    xt = torch.tensor(np.atleast_2d(x), dtype=torch.float64)
    h1 = torch.tanh(xt @ params["W1"].T + params["b1"])
    h2 = torch.sigmoid(h1 @ params["W2"].T + params["b2"])
    logits = h2 @ params["W3"].T + params["b3"]
    loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(np.atleast_1d(y)))
    loss.backward()
    grads = {k: v.grad.numpy() for k, v in params.items()}
    return Gradients(float(loss.detach()), **grads)


def predict(net: SymbolNet, x: np.ndarray) -> np.ndarray:
    """The answer: the index of the most probable symbol for each drawing."""
    return forward(net, x).p.argmax(axis=1)


def accuracy(net: SymbolNet, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict(net, x) == y).mean())


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainResult:
    """A trained network with its loss per step and its accuracies."""

    net: SymbolNet
    losses: np.ndarray  # training loss before each step
    test_losses: np.ndarray  # test loss at the same steps
    train_accuracy: float
    test_accuracy: float


def train(
    data: SymbolData,
    hidden: tuple[int, int] = DEFAULT_HIDDEN,
    steps: int = 2000,
    lr: float = 1.0,
    seed: int = 0,
    weight_decay: float = 0.003,
) -> TrainResult:
    """Full-batch gradient descent with the hand-written backward pass.

    A little weight decay (each step also shrinks every weight by lr * weight_decay * w) keeps
    the network from memorising the noise of the few training drawings: without it the test
    accuracy varies with the seed between about 86% and 100%.
    """
    if steps < 1:
        raise GlassError(f"steps must be at least 1, got {steps}")
    if not lr > 0:
        raise GlassError(f"learning rate must be positive, got {lr}")
    if not weight_decay >= 0:
        raise GlassError(f"weight decay must be >= 0, got {weight_decay}")
    net = SymbolNet.create(hidden, seed)
    losses = np.empty(steps)
    test_losses = np.empty(steps)
    for step in range(steps):
        acts = forward(net, data.x_train)
        grads = backward(net, acts, data.y_train)
        losses[step] = grads.loss
        test_losses[step] = loss_of(forward(net, data.x_test), data.y_test)
        for name in SymbolNet.PARAMS:  # gradient descent: a small step downhill for every weight
            param = getattr(net, name)
            decay = weight_decay * param if name.startswith("W") else 0.0
            param -= lr * (grads.get(name) + decay)
    return TrainResult(
        net,
        losses,
        test_losses,
        accuracy(net, data.x_train, data.y_train),
        accuracy(net, data.x_test, data.y_test),
    )


# ---------------------------------------------------------------------------------------------
# Explanation of one input
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightGradient:
    """One weight's gradient: by the hand-written chain rule and by PyTorch autograd."""

    name: str  # e.g. "W3[2,0]"
    value: float
    hand: float
    autograd: float
    formula: str  # the chain rule for this weight with the numbers filled in


def explain_gradients(net: SymbolNet, x: np.ndarray, label: int) -> list[WeightGradient]:
    """Gradients of the loss on one drawing for one weight in each layer, with their chain rule."""
    acts = forward(net, x)
    grads = backward(net, acts, np.array([label]))
    auto = torch_gradients(net, x, np.array([label]))
    p, h1, h2, xx = acts.p[0], acts.h1[0], acts.h2[0], acts.x[0]
    dz3 = p - np.eye(len(NAMES))[label]
    dz2 = (dz3 @ net.W3) * h2 * (1 - h2)
    dz1 = (dz2 @ net.W2) * (1 - h1**2)
    a2, a1 = int(np.argmax(np.abs(dz2))), int(np.argmax(np.abs(dz1)))
    j1 = 4  # the centre pixel
    out = []

    def add(name: str, index: tuple[int, int], formula: str) -> None:
        array = getattr(net, name)
        hand = float(grads.get(name)[index])
        out.append(
            WeightGradient(
                f"{name}[{index[0]},{index[1]}]",
                float(array[index]),
                hand,
                float(auto.get(name)[index]),
                formula,
            )
        )

    add(
        "W3",
        (label, 0),
        f"(p{label} - 1) * h2_0 = ({p[label]:.4f} - 1) * {h2[0]:.4f}",
    )
    add(
        "W2",
        (a2, 0),
        f"(sum_k dz3_k W3[k,{a2}]) * h2_{a2}(1 - h2_{a2}) * h1_0 = "
        f"{dz3 @ net.W3[:, a2]:.4f} * {h2[a2] * (1 - h2[a2]):.4f} * {h1[0]:.4f}",
    )
    add(
        "W1",
        (a1, j1),
        f"(sum_k dz2_k W2[k,{a1}]) * (1 - h1_{a1}^2) * x_{j1} = "
        f"{dz2 @ net.W2[:, a1]:.4f} * {1 - h1[a1] ** 2:.4f} * {xx[j1]:.0f}",
    )
    return out


def parse_hidden(text: str) -> tuple[int, int]:
    """'16,8' -> (16, 8): the sizes of the two hidden layers."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise GlassError(f"--hidden must be two sizes like 16,8, got {text!r}") from None
    if len(sizes) != 2 or min(sizes) < 1 or max(sizes) > 1000:
        raise GlassError(f"--hidden must be two sizes 1..1000 like 16,8, got {text!r}")
    return sizes[0], sizes[1]
