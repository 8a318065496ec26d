"""The capture layer: what happens inside one forward pass, recorded with forward hooks.

`trace(model, ids)` runs the model once on one sequence and returns a `Trace`: the token
embeddings, for every block the attention and feed-forward contributions to the residual
stream and the stream after each, the queries, keys and values of every head, the final
hidden state (after the final norm) and the logits. The model's `forward` has no
visualisation flags: hooks on `model.embed`, `blocks[i].attn` (its input and output),
`blocks[i].mlp`, `blocks[i]` and `model.final_norm` copy what passes through them, and they
are removed when the call ends (`capture` is the context manager that owns them).

Attention weights are never stored by the model (it calls PyTorch's fused
`scaled_dot_product_attention`), so they are recomputed here. There is no copy of the
model's q/k/v code: the captured attention input (and the RoPE rows the model passed) go
through the model's own `Attention.qkv_heads`, the key/value heads are repeated for
grouped-query attention, then softmax(q k^T / sqrt(Dh)) under the causal mask.
`LayerTrace.attention_output()` multiplies those weights by the values and applies the
output projection; for float32 models `trace` checks that this equals what the attention
module returned to within float rounding, which proves the weights are the ones the model used.

Everything is float32 numbers on the CPU in the end (torch tensors, batch dimension removed),
computed without gradients, with the model in eval mode.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from glassgpt.model import GPT


@dataclass(frozen=True)
class LayerTrace:
    """One block, for a sequence of T positions (D = d_model, H heads, Dh head size).

    `residual_in` + `attn_out` = `residual_mid`; `residual_mid` + `mlp_out` = `residual_out`.
    """

    index: int
    residual_in: torch.Tensor  # (T, D) the stream entering the block
    attn_out: torch.Tensor  # (T, D) what attention adds to the stream
    residual_mid: torch.Tensor  # (T, D) after attention
    mlp_out: torch.Tensor  # (T, D) what the feed-forward network adds
    residual_out: torch.Tensor  # (T, D) the stream leaving the block
    queries: torch.Tensor  # (H, T, Dh) after RoPE
    keys: torch.Tensor  # (H, T, Dh) after RoPE, key heads repeated to H for grouped-query
    values: torch.Tensor  # (H, T, Dh) value heads repeated to H
    weights: torch.Tensor  # (H, T, T) attention weights: row t = how position t reads 0..t
    out_proj: torch.nn.Linear  # the block's attention output projection (for checking)

    @torch.no_grad()
    def attention_output(self) -> torch.Tensor:
        """weights @ values, heads concatenated, then the output projection: (T, D)."""
        heads, length, head_dim = self.values.shape
        mixed = self.weights @ self.values  # (H, T, Dh)
        joined = mixed.transpose(0, 1).reshape(length, heads * head_dim)
        return self.out_proj(joined.to(self.out_proj.weight.dtype)).float()


@dataclass(frozen=True)
class Trace:
    """One forward pass over `ids` (T tokens), layer by layer."""

    ids: tuple[int, ...]
    embeddings: torch.Tensor  # (T, D) token embeddings: the stream entering block 0
    layers: tuple[LayerTrace, ...]
    final_hidden: torch.Tensor  # (T, D) after the final norm: what the output layer reads
    logits: torch.Tensor  # (T, V) one score per vocabulary token, for the token after each

    @property
    def attention(self) -> torch.Tensor:
        """All attention weights, (L, H, T, T)."""
        return torch.stack([layer.weights for layer in self.layers])

    def residual_stream(self) -> torch.Tensor:
        """The stream at every depth, (L + 1, T, D): embeddings, then after each block."""
        return torch.stack([self.embeddings, *(layer.residual_out for layer in self.layers)])


@dataclass
class _Capture:
    """Raw tensors copied by the hooks during one forward pass (batch dimension kept)."""

    embed: torch.Tensor | None = None
    final: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.block_in: dict[int, torch.Tensor] = {}
        self.block_out: dict[int, torch.Tensor] = {}
        # What each attention module was called with: x (B, T, D), cos and sin (T, Dh/2).
        self.attn_in: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.attn: dict[int, torch.Tensor] = {}
        self.mlp: dict[int, torch.Tensor] = {}


@contextlib.contextmanager
def capture(model: GPT) -> Iterator[_Capture]:
    """Hooks that copy the internals of the next forward pass; removed on exit, always."""
    store = _Capture()
    handles = []

    def keep(table: dict[int, torch.Tensor], index: int):
        def hook(_module, _inputs, output):
            table[index] = output.detach().float()

        return hook

    def keep_input(index: int):
        def hook(_module, inputs):
            store.block_in[index] = inputs[0].detach().float()

        return hook

    def keep_attn_input(index: int):
        def hook(_module, args, kwargs):
            # Attention.forward(x, cos, sin, kv_cache=None), called positionally or not.
            bound = dict(zip(("x", "cos", "sin"), args, strict=False)) | kwargs
            # Kept in the model's dtype so that qkv_heads redoes exactly the model's arithmetic.
            store.attn_in[index] = (bound["x"].detach(), bound["cos"], bound["sin"])

        return hook

    def keep_embed(_module, _inputs, output):
        store.embed = output.detach().float()

    def keep_final(_module, _inputs, output):
        store.final = output.detach().float()

    try:
        handles.append(model.embed.register_forward_hook(keep_embed))
        handles.append(model.final_norm.register_forward_hook(keep_final))
        for i, block in enumerate(model.blocks):
            handles.append(block.register_forward_pre_hook(keep_input(i)))
            handles.append(block.register_forward_hook(keep(store.block_out, i)))
            handles.append(
                block.attn.register_forward_pre_hook(keep_attn_input(i), with_kwargs=True)
            )
            handles.append(block.attn.register_forward_hook(keep(store.attn, i)))
            handles.append(block.mlp.register_forward_hook(keep(store.mlp, i)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def causal_attention_weights(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh)) with the future masked out: (H, T, Dh) x2 -> (H, T, T)."""
    length, head_dim = queries.shape[-2], queries.shape[-1]
    scores = queries @ keys.transpose(-1, -2) / math.sqrt(head_dim)
    future = torch.ones(length, length, dtype=torch.bool, device=scores.device).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)


def _heads(model: GPT, index: int, store: _Capture) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (H, T, Dh) of block `index` as float32: the model's own `qkv_heads` on its input.

    Key and value heads are repeated to H for grouped-query attention: each query head is shown
    with the key/value head it reads (`Attention.forward` lets SDPA pair them, `enable_gqa`).
    """
    attn = model.blocks[index].attn
    x, cos, sin = store.attn_in[index]
    q, k, v = (t[0].float() for t in attn.qkv_heads(x, cos, sin))  # (H, T, Dh), (K, T, Dh) x2
    if attn.n_kv_head != attn.n_head:
        # Each group of H / K query heads shares one key/value head.
        k = k.repeat_interleave(attn.n_head // attn.n_kv_head, dim=0)
        v = v.repeat_interleave(attn.n_head // attn.n_kv_head, dim=0)
    return q, k, v


# q, k and v are the model's own (bit for bit), so in float32 the recomputed attention output
# differs from the model's only by the rounding of a different order of operations (fused SDPA
# versus softmax then matmul): measured 1e-7 to 4e-7 of the output's largest value, for 17 to
# 1024 positions, 1 to 12 heads, grouped or not, sharp or flat attention. 1e-5 of that scale
# leaves room for bigger models yet fires on any real mismatch (a wrong RoPE, scale, mask or
# head order is off by 1e-2 or more).
_RECOMPUTATION_TOLERANCE = 1e-5


def _check_recomputation(layer: LayerTrace) -> None:
    """Refuse to show attention weights that do not reproduce the model's attention output."""
    expected = layer.attn_out
    error = float((layer.attention_output() - expected).abs().max())
    # Relative to the output's own scale: an all-zero output (zero weights) must match exactly.
    allowed = _RECOMPUTATION_TOLERANCE * float(expected.abs().max())
    if error > allowed:
        raise RuntimeError(
            f"glassgpt.explain.look.trace's attention recomputation no longer matches glassgpt.model "
            f"(layer {layer.index}: max error {error:.2e} > {allowed:.1e}): "
            "make causal_attention_weights follow Attention.forward, or move the change into "
            "Attention.qkv_heads"
        )


@torch.no_grad()
def trace(model: GPT, ids: list[int] | tuple[int, ...]) -> Trace:
    """Run `model` once on `ids` (one sequence, at most the context length) and record it all."""
    ids = [int(i) for i in ids]
    if not ids:
        raise ValueError("trace needs at least one token id")
    if len(ids) > model.config.context_length:
        raise ValueError(f"{len(ids)} tokens exceed the context of {model.config.context_length}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with capture(model) as store:
            logits = model(torch.tensor([ids], device=device)).logits
    finally:
        model.train(was_training)
    assert store.embed is not None and store.final is not None
    layers = []
    for i, block in enumerate(model.blocks):
        q, k, v = _heads(model, i, store)
        residual_in = store.block_in[i][0]
        attn_out = store.attn[i][0]
        layers.append(
            LayerTrace(
                index=i,
                residual_in=residual_in,
                attn_out=attn_out,
                residual_mid=residual_in + attn_out,
                mlp_out=store.mlp[i][0],
                residual_out=store.block_out[i][0],
                queries=q,
                keys=k,
                values=v,
                weights=causal_attention_weights(q, k),
                out_proj=block.attn.out,
            )
        )
    if next(model.parameters()).dtype == torch.float32:
        for layer in layers:
            _check_recomputation(layer)
    return Trace(
        ids=tuple(ids),
        embeddings=store.embed[0],
        layers=tuple(layers),
        final_hidden=store.final[0],
        logits=logits[0].float(),
    )
