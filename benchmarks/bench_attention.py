"""Causal attention on this CPU, forward + backward: is there a faster kernel than SDPA's?

Attention is ~9% of the `small` preset's credited FLOPs but ~12% of a compiled training step
(`torch.profiler`): the one part of the step far below the matmul peak. This times, at a
preset's attention shape (a training step's tokens, heads, head size, context; fp32, 2 threads
on the reference machine), forward + backward of:

- `sdpa`: `F.scaled_dot_product_attention(is_causal=True)`, what `glassgpt.model` calls (on a
  CPU, ATen's flash attention kernel, which skips the masked half);
- `masked matmuls`: the textbook version, q @ k^T over the whole window, mask, softmax, @ v;
- `blocked matmuls, N blocks`: the queries in N blocks, each against only the keys it can see
  (the diagonal blocks masked), so about (N + 1) / 2N of the masked version's work;
- `hand-written backward, N blocks`: the blocked version as one autograd function that keeps
  each block's probabilities and computes the gradients itself (dV = P^T dO, dS = P (dP -
  rowsum(dO O)), dQ = dS K, dK = dS^T Q), without autograd's per-op bookkeeping;
- `oneDNN products, whole window`: the hand-written backward's products on oneDNN, which runs
  float32 matmuls ~2x MKL's rate on this CPU (`glassgpt.matmul`; training's linear layers use
  it): oneDNN's linear takes one matrix, not a batch, so each (batch, head) is its own call, over
  the whole window (blocks would only make more, smaller calls), as one opaque operator;
- the matmul versions again under `torch.compile` (`--compile`), which fuses the mask and the
  softmax.

Each variant's output and input gradients are checked against `sdpa` first. Rates are
"credited" GFLOP/s: attention's QK^T and AV at the full window, forward + backward (3x the
forward's 4 T^2 Dh per head), as `ModelConfig.flops_per_token` counts them; a causal kernel
does about half of that work, so it can be credited with more than the matmul peak. Last, the
two batched matmuls of the textbook version alone, at the same shapes: how fast MKL runs
matmuls this small (the head size, 64, is the inner dimension of q @ k^T).

`--step` then times whole training steps of the preset (`benchmarks.bench_shapes.step_runner`,
compiled where the preset trains compiled, linear layers on the float32 kernel `glassgpt train`
chooses here, `benchmarks.common.training_kernel`) in worker processes taking turns: one as the model is
(SDPA), the others with another training attention swapped in for the whole process
(`torch.compile` keeps what it traced, so one process cannot switch): the hand-written backward
with 4 blocks as the autograd function, which `torch.compile` traces into, and as one opaque
custom operator (`torch.library.custom_op`), which it calls as it is, like SDPA's kernel; and
the oneDNN version. All with as many key/value heads as query heads, which the hand-written
versions need.

    python benchmarks/bench_attention.py [--preset small] [--repeats 7] [--compile] [--step] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `glassgpt` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glassgpt.entry import prepare_process  # noqa: E402

prepare_process(os.environ)  # before torch, as the `glassgpt` command does: MKL's fast code on AMD CPUs

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.bench_shapes import TOKENS_PER_STEP, step_runner  # noqa: E402
from benchmarks.common import (  # noqa: E402
    cpu_name,
    fmt,
    interleaved,
    markdown_table,
    matmul_gflops,
    seconds,
    start_workers,
    stop_workers,
    training_kernel,
)
from glassgpt.commands.common import positive_int  # noqa: E402
from glassgpt.config import PRESETS, ModelConfig  # noqa: E402
from glassgpt.matmul import onednn_available, onednn_product  # noqa: E402
from glassgpt.model import GPT  # noqa: E402
from glassgpt.runtime import keep_freed_memory  # noqa: E402

Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
ONEDNN = "oneDNN products, whole window"


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def blocked(blocks: int, context: int) -> Attention:
    """Causal attention as matmuls, queries in `blocks` blocks, each against only the keys up to
    its own last position (1 block: the whole masked window)."""
    size = context // blocks
    # Query block i (positions i*size ...) sees keys 0 .. (i+1)*size - 1, itself causally.
    masks = [torch.ones(size, (i + 1) * size, dtype=torch.bool).tril(diagonal=i * size) for i in range(blocks)]

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        scale = q.size(-1) ** -0.5
        outs = []
        for i, mask in enumerate(masks):
            end = (i + 1) * size
            scores = (q[:, :, i * size:end] @ k[:, :, :end].transpose(-1, -2)) * scale
            outs.append(torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1) @ v[:, :, :end])
        return torch.cat(outs, dim=2)

    return attend


def blocked_forward(Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor, blocks: int) -> list[torch.Tensor]:
    """Causal attention of (N, T, Dh) queries, keys and values, the queries in `blocks` blocks
    each against only the keys it sees: [out, probabilities of block 0, 1, ...] (what the
    hand-written backward needs: ~60% of the whole window's probabilities for 4 blocks)."""
    N, T, Dh = Q.shape
    if T % blocks:
        raise ValueError(f"{T} positions do not split into {blocks} equal blocks")
    size, scale = T // blocks, Dh**-0.5
    above_diagonal = torch.ones(size, size, dtype=torch.bool).triu(1)
    out = torch.empty(N, T, Dh, dtype=Q.dtype)
    probs = []
    for i in range(blocks):
        start, end = i * size, (i + 1) * size
        scores = torch.bmm(Q[:, start:end], K[:, :end].transpose(1, 2)).mul_(scale)
        scores[:, :, start:end].masked_fill_(above_diagonal, float("-inf"))
        p = torch.softmax(scores, dim=-1)
        out[:, start:end] = torch.bmm(p, V[:, :end])
        probs.append(p)
    return [out, *probs]


def blocked_backward(dO: torch.Tensor, Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor, out: torch.Tensor,
                     probs: list[torch.Tensor]) -> list[torch.Tensor]:
    """[dQ, dK, dV] of `blocked_forward`, block by block from its probabilities: dV = P^T dO,
    dS = P (dP - rowsum(dO O)), dQ = dS K, dK = dS^T Q."""
    T, Dh = Q.shape[1:]
    size, scale = T // len(probs), Dh**-0.5
    row_dot = (dO * out).sum(-1, keepdim=True)  # rowsum(dO * O) = rowsum(P * dP): (N, T, 1)
    dQ, dK, dV = torch.empty_like(Q), torch.zeros_like(K), torch.zeros_like(V)
    for i, p in enumerate(probs):
        start, end = i * size, (i + 1) * size
        dV[:, :end] += torch.bmm(p.transpose(1, 2), dO[:, start:end])
        dS = torch.bmm(dO[:, start:end], V[:, :end].transpose(1, 2)).sub_(row_dot[:, start:end]).mul_(p).mul_(scale)
        dQ[:, start:end] = torch.bmm(dS, K[:, :end])
        dK[:, :end] += torch.bmm(dS.transpose(1, 2), Q[:, start:end])
    return [dQ, dK, dV]


def heads_flat(*xs: torch.Tensor) -> list[torch.Tensor]:
    """(B, H, T, Dh) -> (B*H, T, Dh): the layout batched matmuls take (a copy of the projection's views)."""
    return [x.reshape(-1, *x.shape[2:]) for x in xs]


class HandWrittenBlocked(torch.autograd.Function):
    """`blocked` with its backward written out (`blocked_forward`, `blocked_backward`). Under
    `torch.compile` Dynamo traces into it, so Inductor sees (and rearranges) its ops."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, blocks: int) -> torch.Tensor:
        Q, K, V = heads_flat(q, k, v)
        out, *probs = blocked_forward(Q, K, V, blocks)
        ctx.save_for_backward(Q, K, V, out, *probs)
        return out.view(q.shape)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        Q, K, V, out, *probs = ctx.saved_tensors
        grads = blocked_backward(*heads_flat(grad_out), Q, K, V, out, probs)
        return (*(g.view(grad_out.shape) for g in grads), None)


# The same as one opaque operator: `torch.compile` calls it as it is (no graph break, nothing of
# it traced), the way it calls SDPA's kernel.
@torch.library.custom_op("glassgpt_bench::blocked_attention", mutates_args=())
def blocked_attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, blocks: int) -> list[torch.Tensor]:
    out, *probs = blocked_forward(*heads_flat(q, k, v), blocks)
    return [out.view(q.shape), *probs]


@blocked_attention_op.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, blocks: int) -> list[torch.Tensor]:
    B, H, T, _ = q.shape
    size = T // blocks
    return [torch.empty_like(q), *(q.new_empty(B * H, size, (i + 1) * size) for i in range(blocks))]


@torch.library.custom_op("glassgpt_bench::blocked_attention_backward", mutates_args=())
def blocked_attention_backward_op(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                  out: torch.Tensor, probs: list[torch.Tensor]) -> list[torch.Tensor]:
    Q, K, V, out_flat, dO = heads_flat(q, k, v, out, grad_out.contiguous())
    return [g.view(q.shape) for g in blocked_backward(dO, Q, K, V, out_flat, probs)]


@blocked_attention_backward_op.register_fake
def _(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
      probs: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)]


def _save_for_op_backward(ctx, inputs: tuple, output: list[torch.Tensor]) -> None:
    q, k, v, _ = inputs
    ctx.save_for_backward(q, k, v, *output)


def _op_backward(ctx, grads: list[torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
    q, k, v, out, *probs = ctx.saved_tensors
    return (*blocked_attention_backward_op(grads[0], q, k, v, out, probs), None)


blocked_attention_op.register_autograd(_op_backward, setup_context=_save_for_op_backward)


def hand_written(blocks: int) -> Attention:
    return lambda q, k, v: HandWrittenBlocked.apply(q, k, v, blocks)


def hand_written_op(blocks: int) -> Attention:
    return lambda q, k, v: blocked_attention_op(q.contiguous(), k.contiguous(), v.contiguous(), blocks)[0]


# Attention's products on oneDNN, where `glassgpt.matmul` trains the linear layers on this CPU
# (~2x MKL's rate): the four products of each head the plain way, one (batch, head) at a time
# (oneDNN's linear takes one weight, not a batch of them), over the whole window, and the
# probabilities kept for the backward: dV = P^T dO, dS = P (dO V^T - rowsum(dO O)) / sqrt(Dh),
# dQ = dS K, dK = dS^T Q. Each direction is one opaque operator. Every operand is contiguous or
# the transpose of a contiguous matrix: oneDNN multiplied a (256, 128) slice of a wider matrix
# (rows 1152 floats apart, one head of the q/k/v projection) in ~100 ms instead of ~0.06 ms.

def _heads(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(B, H, T, d) contiguous -> its B*H matrices (T, d), views."""
    return x.view(-1, *x.shape[2:]).unbind(0)


@torch.library.custom_op("glassgpt_bench::onednn_attention", mutates_args=())
def onednn_attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> list[torch.Tensor]:
    """q, k, v (B, H, T, Dh) contiguous -> [out (B, H, T, Dh), each (batch, head)'s probabilities (T, T)]."""
    T, Dh = q.shape[2:]
    above_diagonal = torch.full((T, T), float("-inf")).triu_(1)
    probs, outs = [], []
    for query, key, value in zip(_heads(q), _heads(k), _heads(v), strict=True):
        p = torch.softmax(onednn_product(query, key).mul_(Dh**-0.5).add_(above_diagonal), dim=-1)  # QK^T/sqrt(Dh)
        probs.append(p)
        outs.append(onednn_product(p, value.t()))  # P V
    return [torch.stack(outs).view(q.shape), *probs]


@onednn_attention_op.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> list[torch.Tensor]:
    B, H, T, _ = q.shape
    return [torch.empty_like(q), *(q.new_empty(T, T) for _ in range(B * H))]


@torch.library.custom_op("glassgpt_bench::onednn_attention_backward", mutates_args=())
def onednn_attention_backward_op(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 out: torch.Tensor, probs: list[torch.Tensor]) -> list[torch.Tensor]:
    """[dq, dk, dv], every tensor (B, H, T, Dh) contiguous."""
    T, Dh = q.shape[2:]
    row_dots = (grad_out * out).sum(-1, keepdim=True).view(-1, T, 1).unbind(0)  # rowsum(dO O) = rowsum(P dP)
    grads: tuple[list[torch.Tensor], ...] = ([], [], [])
    for query, key, value, p, d_out, row_dot in zip(_heads(q), _heads(k), _heads(v), probs, _heads(grad_out),
                                                    row_dots, strict=True):
        grad_scores = onednn_product(d_out, value).sub_(row_dot).mul_(p).mul_(Dh**-0.5)  # dS
        grads[0].append(onednn_product(grad_scores, key.t()))  # dQ = dS K
        grads[1].append(onednn_product(grad_scores.t(), query.t()))  # dK = dS^T Q
        grads[2].append(onednn_product(p.t(), d_out.t()))  # dV = P^T dO
    return [torch.stack(g).view(q.shape) for g in grads]


@onednn_attention_backward_op.register_fake
def _(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
      probs: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.empty_like(q) for _ in range(3)]


def _save_for_onednn_backward(ctx, inputs: tuple, output: list[torch.Tensor]) -> None:
    ctx.save_for_backward(*inputs, *output)


def _onednn_backward(ctx, grads: list[torch.Tensor | None]) -> tuple[torch.Tensor, ...]:
    q, k, v, out, *probs = ctx.saved_tensors
    return tuple(onednn_attention_backward_op(grads[0].contiguous(), q, k, v, out, probs))


onednn_attention_op.register_autograd(_onednn_backward, setup_context=_save_for_onednn_backward)


def onednn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return onednn_attention_op(q.contiguous(), k.contiguous(), v.contiguous())[0]


def variants(context: int, compiled: bool) -> dict[str, Attention]:
    matmul_versions: dict[str, Attention] = {"masked matmuls": blocked(1, context)}
    for blocks in (2, 4, 8):
        if context % blocks == 0 and context // blocks >= 8:
            matmul_versions[f"blocked matmuls, {blocks} blocks"] = blocked(blocks, context)
    found: dict[str, Attention] = {"sdpa": sdpa, **matmul_versions}
    for blocks in (2, 4):
        if context % blocks == 0 and context // blocks >= 8:
            found[f"hand-written backward, {blocks} blocks"] = hand_written(blocks)
            if blocks == 4:  # the version `--step` times too
                found["hand-written backward, 4 blocks, one operator"] = hand_written_op(4)
    if onednn_available():
        found[ONEDNN] = onednn
    if compiled:
        found.update({f"{name}, compiled": torch.compile(fn) for name, fn in matmul_versions.items()})
    return found


def step_worker(config: ModelConfig, compiled: bool, swap_in: str, kernel: str, conn: Connection) -> None:
    """Serve turns of two training steps of a `config` model, answered with tokens/s; its linear
    layers on `kernel` (the one `glassgpt train` chooses here, picked once). `swap_in`: ""
    keeps SDPA; "function", "operator" or "onednn" makes the model's causal training attention
    `hand_written(4)`, `hand_written_op(4)` or `onednn`."""
    swapped_calls, counting = 0, True
    if swap_in:
        original = F.scaled_dot_product_attention
        ours = {"function": hand_written(4), "operator": hand_written_op(4), "onednn": onednn}[swap_in]

        def attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
            nonlocal swapped_calls
            if is_causal and attn_mask is None and not enable_gqa and scale is None and torch.is_grad_enabled():
                if counting:  # eager only: a counter changing under torch.compile would recompile each call
                    swapped_calls += 1
                return ours(q, k, v)
            return original(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
                            enable_gqa=enable_gqa)

        F.scaled_dot_product_attention = attention  # this process only
        ids = torch.zeros(1, config.context_length, dtype=torch.long)
        GPT(config)(ids, ids)  # one eager forward: the model's attention must come here
        if swapped_calls != config.n_layer:
            raise RuntimeError(f"the hand-written attention ran in {swapped_calls} of {config.n_layer} layers")
        counting = False
    keep_freed_memory()
    run = step_runner(config, compiled, kernel=kernel)
    run()  # warm up (and compile)
    conn.send(("ready", None))
    while conn.recv() is not None:
        conn.send(run())


def whole_steps(preset: str, repeats: int) -> list[list[str]]:
    """Training steps with SDPA and with the hand-written attention (both ways), in turns: table rows."""
    config, compiled = PRESETS[preset].model, PRESETS[preset].train.compile == "on"
    config = dataclasses.replace(config, n_kv_head=config.n_head)  # the hand-written version has no GQA
    workers = [("sdpa", ""), ("hand-written backward, 4 blocks", "function"),
               ("hand-written backward, 4 blocks, one operator", "operator")]
    if onednn_available():
        workers.append((ONEDNN, "onednn"))
    kernel = training_kernel()  # once, for every worker
    conns = start_workers("bench_attention", {label: (step_worker, (config, compiled, swap_in, kernel))
                                              for label, swap_in in workers})

    def turn(label: str) -> float:
        conns[label].send(True)
        return conns[label].recv()

    rates = interleaved({label: (lambda label=label: turn(label)) for label in conns}, repeats)
    stop_workers(conns)
    base = rates["sdpa"].median
    return [[f"{preset} step, {label}", fmt(rate.median), f"{rate.median / base:.2f}x", f"{rate.spread:.0%}"]
            for label, rate in rates.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small", help="whose attention shape (default small)")
    parser.add_argument("--repeats", type=positive_int, default=7, help="rounds (default 7)")
    parser.add_argument("--compile", action="store_true", help="also time the matmul versions under torch.compile")
    parser.add_argument("--step", action="store_true",
                        help="also time whole training steps with each attention (two processes)")
    parser.add_argument("--quick", action="store_true", help="a tiny shape, one round (seconds; for tests)")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as `glassgpt train` does
    config = PRESETS["tiny" if args.quick else args.preset].model
    T, H, Dh = config.context_length, config.n_head, config.head_dim
    rows = max(1, (2048 if args.quick else TOKENS_PER_STEP) // T)
    torch.manual_seed(0)
    # q, k and v as the model makes them: views of one (B, T, 3H, Dh) projection, heads moved forward.
    projection = torch.randn(rows, T, 3 * H, Dh)
    grad_out = torch.randn(rows, H, T, Dh)

    def inputs() -> tuple[torch.Tensor, ...]:
        leaf = projection.clone().requires_grad_()
        return (leaf, *leaf.transpose(1, 2).split(H, dim=1))

    def forward_backward(attend: Attention) -> tuple[torch.Tensor, torch.Tensor]:
        leaf, q, k, v = inputs()
        out = attend(q, k, v)
        out.backward(grad_out)
        return out.detach(), leaf.grad

    found = variants(T, args.compile)
    reference = forward_backward(sdpa)
    for name, attend in found.items():  # checks, and the warm-up (compiling) round
        out, grad = forward_backward(attend)
        if not (torch.allclose(out, reference[0], atol=1e-4) and torch.allclose(grad, reference[1], atol=1e-3)):
            raise SystemExit(f"{name} does not compute the same attention as sdpa")
    credited = 3 * 4 * T * T * Dh * H * rows  # forward + backward FLOPs at the full window
    runners = {name: (lambda attend=attend: credited / seconds(lambda: forward_backward(attend)))
               for name, attend in found.items()}
    scores_a, scores_b = torch.randn(rows * H, T, Dh), torch.randn(rows * H, Dh, T)
    probs, values = torch.randn(rows * H, T, T), torch.randn(rows * H, T, Dh)
    one_matmul = 2 * T * T * Dh * rows * H
    runners["q @ k^T alone (bmm)"] = lambda: one_matmul / seconds(lambda: torch.bmm(scores_a, scores_b))
    runners["p @ v alone (bmm)"] = lambda: one_matmul / seconds(lambda: torch.bmm(probs, values))
    size, min_seconds = (512, 0.1) if args.quick else (1024, 0.5)
    runners["peak"] = lambda: matmul_gflops(size, torch.float32, min_seconds) * 1e9
    rates = interleaved(runners, 1 if args.quick else args.repeats)
    peak = rates.pop("peak")
    base = rates["sdpa"].median
    lines = []
    for name, rate in rates.items():
        alone = name.endswith("(bmm)")
        lines.append([name, f"{one_matmul / rate.median * 1e3 if alone else credited / rate.median * 1e3:.1f}",
                      fmt(rate.median / 1e9), "" if alone else f"{rate.median / base:.2f}x",
                      f"{rate.median / peak.median:.0%}", f"{rate.spread:.0%}"])
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, fp32; {args.preset if not args.quick else 'tiny'}'s "
          f"attention: {rows} x {H} heads x {T} positions x {Dh}; matmul peak median {peak.median / 1e9:.0f} GFLOP/s\n")
    print(markdown_table(["forward + backward", "ms", "GFLOP/s (credited)", "vs sdpa", "of peak", "spread"], lines))
    if args.step:
        print()
        print(markdown_table(["training step", "tokens/s", "vs sdpa", "spread"],
                             whole_steps("tiny" if args.quick else args.preset, 1 if args.quick else args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
