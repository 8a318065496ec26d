"""`glassgpt nn symbols` and `glassgpt nn regions`: the small networks of the explanations.

`symbols` trains the 3x3 symbol recogniser with hand-written backpropagation and can show every
neuron's value for one drawing (`--explain`); `regions` trains a network on three regions of the
plane, maps its uncertainty, and sweeps network sizes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from glassgpt.errors import GlassError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "nn",
        help="the small neural networks of the explanations (3x3 symbols, three regions)",
        description="Small neural networks you can see inside: `symbols` and `regions`.",
    )
    examples = p.add_subparsers(dest="example", metavar="EXAMPLE")
    examples.required = True

    s = examples.add_parser(
        "symbols",
        help="the 3x3 symbol recogniser, trained by hand-written backpropagation",
        description=(
            "9 pixels (1 white, -1 black) -> tanh layer -> sigmoid layer -> 4 softmax outputs "
            "(X O + T). Trained by full-batch gradient descent with a backward pass written "
            "by hand in numpy, checked against PyTorch autograd."
        ),
    )
    s.add_argument("--hidden", default="16,8", help="sizes of the two hidden layers (16,8)")
    s.add_argument("--steps", type=int, default=2000, help="gradient descent steps (2000)")
    s.add_argument("--lr", type=float, default=1.0, help="learning rate (1.0)")
    s.add_argument("--weight-decay", type=float, default=0.003, help="weight decay (0.003)")
    s.add_argument("--seed", type=int, default=0, help="seed of the weights and the split (0)")
    s.add_argument(
        "--explain", action="store_true", help="show every neuron's value for one test drawing"
    )
    s.add_argument("--example", type=int, default=0, help="which test drawing --explain shows")
    s.add_argument("--out", default="nn/symbols", help="folder for the PNGs (./nn/symbols)")
    s.set_defaults(func=run_symbols)

    r = examples.add_parser(
        "regions",
        help="which of three regions a point is in, the uncertainty, and a size sweep",
        description=(
            "A network (tanh hidden layers, 3 softmax outputs) learns which of three regions of "
            "the plane a point lies in; the map shows where it can't make up its mind; a sweep "
            "trains networks of many sizes on the same data (PyTorch, Adam, full batch)."
        ),
    )
    r.add_argument("--layers", type=int, default=3, help="hidden layers (3)")
    r.add_argument("--width", type=int, default=32, help="neurons per hidden layer (32)")
    r.add_argument("--steps", type=int, default=1000, help="training steps (1000)")
    r.add_argument("--lr", type=float, default=0.02, help="Adam learning rate (0.02)")
    r.add_argument("--points", type=int, default=2000, help="training points (2000)")
    r.add_argument("--seed", type=int, default=0, help="seed of data and weights (0)")
    r.add_argument("--sweep-layers", default="1,2,3,4", help="sweep: hidden layers (1,2,3,4)")
    r.add_argument(
        "--sweep-widths", default="2,4,8,16,32,64", help="sweep: widths (2,4,8,16,32,64)"
    )
    r.add_argument("--sweep-steps", type=int, default=500, help="sweep: steps per network (500)")
    r.add_argument("--sweep-points", type=int, default=1000, help="sweep: training points (1000)")
    r.add_argument("--sweep-lr", type=float, default=0.03, help="sweep: Adam learning rate (0.03)")
    r.add_argument("--no-sweep", action="store_true", help="skip the size sweep")
    r.add_argument("--out", default="nn/regions", help="folder for the PNGs (./nn/regions)")
    r.set_defaults(func=run_regions)


def _positive(value: float, option: str) -> None:
    if not value > 0:
        raise GlassError(f"{option} must be positive, got {value}")


def _fmt(values, spec: str = "+.2f") -> str:
    return " ".join(format(float(v), spec) for v in values)


# ---------------------------------------------------------------------------------------------
# nn symbols
# ---------------------------------------------------------------------------------------------


def run_symbols(args: argparse.Namespace) -> int:
    from glassgpt.explain.networks import symbols as sym

    hidden = sym.parse_hidden(args.hidden)
    _positive(args.steps, "--steps")
    _positive(args.lr, "--lr")
    if args.weight_decay < 0:
        raise GlassError(f"--weight-decay must be >= 0, got {args.weight_decay}")

    import torch

    from glassgpt.explain.networks.draw import plot_loss, plot_symbol_examples, plot_symbol_network

    torch.set_num_threads(1)  # only used for the autograd check of tiny tensors
    data = sym.make_dataset(args.seed)
    if not 0 <= args.example < len(data.y_test):
        raise GlassError(f"--example must be 0..{len(data.y_test) - 1}, got {args.example}")
    out = Path(args.out)
    net_desc = f"9 inputs -> {hidden[0]} tanh -> {hidden[1]} sigmoid -> 4 softmax"
    n_params = 9 * hidden[0] + hidden[0] + hidden[0] * hidden[1] + hidden[1] + hidden[1] * 4 + 4
    print(
        f"Data: the symbols {' '.join(sym.NAMES)} on 3x3 pixels (1 = white, -1 = black), clean "
        "and with every 1- or 2-pixel flip\nthat stays closest to its own symbol: "
        f"{len(data.y_train)} training drawings, {len(data.y_test)} test drawings"
    )
    print(f"Network: {net_desc} ({n_params} weights and biases), weights start in -1..1")
    print(
        f"Training: full-batch gradient descent, lr {args.lr:g}, weight decay "
        f"{args.weight_decay:g}, {args.steps} steps;\n  gradients from the hand-written "
        "backward pass (numpy), loss = cross-entropy"
    )
    t0 = time.perf_counter()
    result = sym.train(data, hidden, args.steps, args.lr, args.seed, args.weight_decay)
    elapsed = time.perf_counter() - t0
    print(f"  {'step':>6s} {'train loss':>11s} {'test loss':>10s}")
    marks = sorted({0, 10, 50, 100, 200, 500, 1000, args.steps - 1} & set(range(args.steps)))
    for step in marks:
        print(f"  {step:6d} {result.losses[step]:11.4f} {result.test_losses[step]:10.4f}")
    print(
        f"Trained in {elapsed:.1f} s: training accuracy {100 * result.train_accuracy:.1f}%, "
        f"test accuracy {100 * result.test_accuracy:.1f}% ({len(data.y_test)} drawings never "
        "seen in training)"
    )
    net = result.net
    hand = sym.backward(net, sym.forward(net, data.x_train), data.y_train)
    auto = sym.torch_gradients(net, data.x_train, data.y_train)
    diff = max(float(abs(hand.get(k) - auto.get(k)).max()) for k in sym.SymbolNet.PARAMS)
    print(
        "Backpropagation check: hand-written gradients vs PyTorch autograd, all "
        f"{n_params} parameters: max difference {diff:.1e}"
    )

    if args.explain:
        _explain(sym, net, data, args.example)

    predicted = sym.predict(net, data.x_test)
    clean_pixels = [sym.symbol_pixels(name) for name in sym.NAMES]
    labels = ["9 pixels", f"{hidden[0]} tanh", f"{hidden[1]} sigmoid", "4 softmax"]
    written = [
        plot_loss(
            result.losses,
            out / "symbols_loss.png",
            "3x3 symbols: loss per gradient descent step",
            result.test_losses,
        ),
        plot_symbol_network(
            [net.W1, net.W2, net.W3], labels, sym.NAMES, out / "symbols_network.png"
        ),
        plot_symbol_examples(
            data.x_test, data.y_test, predicted, sym.NAMES, clean_pixels, out / "symbols_test.png"
        ),
    ]
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _explain(sym, net, data, index: int) -> None:
    x, label = data.x_test[index], int(data.y_test[index])
    acts = sym.forward(net, x)
    grid = x.reshape(3, 3)
    print(
        f"\nExplaining test drawing #{index} (symbol {sym.NAMES[label]} with "
        f"{int(data.flips_test[index])} pixel(s) flipped; # = black):"
    )
    for row in grid:
        print("    " + " ".join("#" if v < 0 else "." for v in row))
    print(f"  inputs x (9 pixels):            {_fmt(acts.x[0], '+.0f')}")
    print("  hidden layer 1: z1 = W1 x + b1, h1 = tanh(z1), in -1..1")
    print(f"    z1: {_fmt(acts.z1[0])}")
    print(f"    h1: {_fmt(acts.h1[0])}")
    print("  hidden layer 2: z2 = W2 h1 + b2, h2 = sigmoid(z2), in 0..1")
    print(f"    z2: {_fmt(acts.z2[0])}")
    print(f"    h2: {_fmt(acts.h2[0], '.2f')}")
    print("  output: z3 = W3 h2 + b3, p = softmax(z3)")
    print(f"    z3: {_fmt(acts.z3[0])}")
    probs = "  ".join(f"{n} {p:.4f}" for n, p in zip(sym.NAMES, acts.p[0], strict=True))
    answer = sym.NAMES[int(acts.p[0].argmax())]
    print(f"    p:  {probs}   -> answer {answer}")
    loss = sym.loss_of(acts, [label])
    print(
        f"  loss = -ln p({sym.NAMES[label]}) = {loss:.5f}. Its gradient for a few weights "
        "(backprop by hand | PyTorch autograd), with the chain rule:"
    )
    for g in sym.explain_gradients(net, x, label):
        print(f"    dL/d{g.name} = {g.hand:+.3e} | {g.autograd:+.3e}   (weight now {g.value:+.3f})")
        print(f"        = {g.formula}")
    print()


# ---------------------------------------------------------------------------------------------
# nn regions
# ---------------------------------------------------------------------------------------------


def run_regions(args: argparse.Namespace) -> int:
    from glassgpt.explain.networks import regions as reg

    for value, option in (
        (args.layers, "--layers"),
        (args.width, "--width"),
        (args.steps, "--steps"),
        (args.lr, "--lr"),
        (args.points, "--points"),
        (args.sweep_steps, "--sweep-steps"),
        (args.sweep_lr, "--sweep-lr"),
        (args.sweep_points, "--sweep-points"),
    ):
        _positive(value, option)
    sweep_layers = reg.parse_sizes(args.sweep_layers, "--sweep-layers")
    sweep_widths = reg.parse_sizes(args.sweep_widths, "--sweep-widths")
    reg.build_net(args.layers, args.width)  # checks the size before any work
    for n_layers in sweep_layers:
        for width in sweep_widths:
            reg.build_net(n_layers, width)

    import torch

    from glassgpt.explain.networks.draw import plot_loss, plot_regions_map, plot_sweep

    torch.set_num_threads(1)  # tiny networks: one thread is as fast and leaves the other core
    out = Path(args.out)
    print(
        f"Regions of the square [-1,1]^2: {reg.REGION_NAMES[0]} (radius {reg.RADIUS}), and "
        "outside it the parts\nabove and below the wave y = 0.35 sin(2.5 x) - 0.1"
    )
    t0 = time.perf_counter()
    result = reg.train_regions(args.layers, args.width, args.steps, args.lr, args.seed, args.points)
    elapsed = time.perf_counter() - t0
    n_params = sum(p.numel() for p in result.net.parameters())
    print(
        f"Network: 2 inputs -> {args.layers} x {args.width} tanh -> 3 softmax ({n_params:,} "
        f"parameters); PyTorch, Adam lr {args.lr:g} decaying\n  linearly to 0, "
        f"{args.steps} full-batch steps on {args.points:,} random points, {elapsed:.1f} s"
    )
    marks = sorted({0, 100, 300, args.steps - 1} & set(range(args.steps)))
    print("  loss: " + ", ".join(f"step {s} {result.losses[s]:.4f}" for s in marks))
    print(f"Test accuracy: {100 * result.test_accuracy:.1f}% on 3,000 new random points")
    probe = reg.make_points(20_000, args.seed + 20_000).points
    unc = reg.uncertainty_near_far(result.net, probe)
    print(
        f"Uncertainty = entropy of the output probabilities (0 = sure, {reg.MAX_ENTROPY:.2f} "
        "bits = no idea), 20,000 random points:"
    )
    print(
        f"  near a boundary (< {reg.NEAR}):  {unc.near:.3g} bits on average "
        f"({unc.near_points:,} points)"
    )
    print(
        f"  far from it (> {reg.FAR}):      {unc.far:.3g} bits on average "
        f"({unc.far_points:,} points)"
    )
    pm = reg.plane_map(result.net)
    written = [
        plot_regions_map(
            pm.xs,
            pm.region,
            pm.entropy,
            pm.truth,
            reg.MAX_ENTROPY,
            reg.REGION_NAMES,
            out / "regions_map.png",
        ),
        plot_loss(result.losses, out / "regions_loss.png", "Three regions: training loss"),
    ]

    if not args.no_sweep:
        print(
            f"\nSweep: every size trained on the same {args.sweep_points:,} points, seed "
            f"{args.seed}, {args.sweep_steps} Adam steps (lr {args.sweep_lr:g}):"
        )
        print(f"  {'layers':>6s} {'width':>5s} {'params':>7s} {'final loss':>11s} {'test acc':>9s}")
        t0 = time.perf_counter()
        rows = []
        for n_layers in sweep_layers:
            for width in sweep_widths:
                row = reg.sweep(
                    [n_layers],
                    [width],
                    args.sweep_steps,
                    args.sweep_lr,
                    args.seed,
                    args.sweep_points,
                )[0]
                rows.append(row)
                print(
                    f"  {row.layers:6d} {row.width:5d} {row.parameters:7,d} "
                    f"{row.final_loss:11.4f} {100 * row.test_accuracy:8.1f}%",
                    flush=True,
                )
        print(f"  sweep took {time.perf_counter() - t0:.0f} s")
        written.append(plot_sweep(rows, out / "regions_sweep.png"))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
