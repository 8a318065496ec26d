"""The capture layer: what happens inside one forward pass, recorded with forward hooks.

`trace(model, ids)` runs the model once on one sequence and returns a `Trace`: the token
embeddings, for every block the attention and feed-forward contributions to the residual
stream and the stream after each, the queries, keys and values of every head, the final
hidden state (after the final norm) and the logits. The model's `forward` has no
visualisation flags: hooks on `model.embed`, `blocks[i].attn.qkv`, `blocks[i].attn`,
`blocks[i].mlp`, `blocks[i]` and `model.final_norm` copy what passes through them, and they
are removed when the call ends (`capture` is the context manager that owns them).

Attention weights are never stored by the model (it calls PyTorch's fused
`scaled_dot_product_attention`), so they are recomputed here from the captured q and k:
split the fused `qkv` output, rotate q and k with the model's own RoPE tables, repeat the key
heads for grouped-query attention, then softmax(q k^T / sqrt(Dh)) under the causal mask.
`LayerTrace.attention_output()` multiplies those weights by the captured values and applies
the output projection; the tests check that this equals what the attention module returned,
which proves the recomputed weights are the ones the model used.

Everything is float32 numbers on the CPU in the end (torch tensors, batch dimension removed),
computed without gradients, with the model in eval mode.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from glassgpt.model import GPT, apply_rope


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
        self.qkv: dict[int, torch.Tensor] = {}
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
            handles.append(block.attn.qkv.register_forward_hook(keep(store.qkv, i)))
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


def _split_heads(model: GPT, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fused qkv output (T, (H + 2K) Dh) -> q, k, v (H, T, Dh), RoPE applied, k/v repeated.

    This mirrors `Attention.forward`: queries and keys are rotated together by `apply_rope`
    in its (B, T, heads, Dh) layout with the model's own (T, Dh/2) cos/sin tables.
    """
    config = model.config
    heads, kv_heads, head_dim = config.n_head, config.n_kv_head, config.head_dim
    length = qkv.shape[0]
    qk, v = qkv.split([(heads + kv_heads) * head_dim, kv_heads * head_dim], dim=-1)
    cos = model.rope_cos[:length].float().to(qkv.device)
    sin = model.rope_sin[:length].float().to(qkv.device)
    qk = apply_rope(qk.reshape(1, length, heads + kv_heads, head_dim), cos, sin)[0]  # (T, H+K, Dh)
    q, k = qk.split([heads, kv_heads], dim=1)
    q, k = q.transpose(0, 1), k.transpose(0, 1)  # (H, T, Dh), (K, T, Dh)
    v = v.reshape(length, kv_heads, head_dim).transpose(0, 1)
    if kv_heads != heads:
        # Each group of H / K query heads shares one key/value head (as the model does).
        k = k.repeat_interleave(heads // kv_heads, dim=0)
        v = v.repeat_interleave(heads // kv_heads, dim=0)
    return q, k, v


def _check_recomputation(layer: LayerTrace) -> None:
    """Refuse to show attention weights that do not reproduce the model's attention output."""
    expected = layer.attn_out
    error = float((layer.attention_output() - expected).abs().max())
    if error > 1e-3 * (1.0 + float(expected.abs().max())):
        raise RuntimeError(
            f"glassgpt.explain.look.trace's attention recomputation no longer matches glassgpt.model "
            f"(layer {layer.index}: max error {error:.2e}): update _split_heads to the model's "
            "attention code"
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
        q, k, v = _split_heads(model, store.qkv[i][0])
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
