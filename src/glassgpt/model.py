"""The GPT: a decoder-only transformer, readable top to bottom.

text -> token ids -> embeddings -> n_layer x [attention + feed-forward] -> final norm ->
one score (logit) per vocabulary token. The architecture is Llama's: pre-norm RMSNorm, rotary
position embeddings (RoPE), SwiGLU feed-forward, no biases, optional grouped-query attention
and tied input/output embeddings. Its math equals Hugging Face `LlamaForCausalLM` with the same
config (tests/test_model.py copies our weights across and compares logits).

GPT-2 differs in four places, each a `ModelConfig` switch (see `make_norm`, `Attention.qkv_heads`,
`FeedForward`, `GPT.forward`): LayerNorm instead of RMSNorm (`norm`), a learned vector added per
position instead of rotating q and k (`position`), a GELU MLP instead of SwiGLU (`mlp`), and
biases in the linear layers (`bias`). With them set, the math equals `GPT2LMHeadModel`
(tests/interop/test_hf_import.py imports its weights and compares logits).

The model never samples: `forward` returns logits, or the loss when targets are given. The
generation loop lives in `glassgpt.engine`; it passes a `KVCache` so that each new token only
costs one position of work. Nothing here is for visualisation: `glassgpt.explain.look.trace` uses
hooks, and rebuilds the attention weights from `Attention.qkv_heads`, the same method `forward` uses.

Shape names: B batch, T time (positions), D d_model, H heads, K kv heads, Dh head size, V vocab.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from glassgpt.config import ModelConfig
from glassgpt.matmul import linear, mm_nt, weight_grad


class KVCache:
    """Keys and values of every layer for the positions seen so far, preallocated.

    The engine creates one per generation; each attention layer writes its new keys/values at
    `position` and reads everything before. `advance` moves `position` after all layers ran.

    A `rolling` cache (rotary models only) goes on past `max_length`: each new position
    overwrites the slot of the oldest one (slot = position mod max_length), so a long generation
    costs one position of work per token and attends to the last `max_length` positions. This is
    sound because the keys are stored already rotated to their own positions and a single query
    attends to every stored key (softmax does not care about their order): a rotary score depends
    only on the distance between query and key, which never exceeds the context the model was
    trained on. The result equals a full forward pass whose causal mask is cut to a band of
    `max_length` positions (tests/test_engine.py checks exactly that). Positions past the context
    enter one at a time; a learned position table (GPT-2) has no rows for them, so such models
    slide their window instead (`glassgpt.engine`).
    """

    def __init__(self, config: ModelConfig, batch_size: int, max_length: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 rolling: bool = False) -> None:
        if rolling and not self.can_roll(config):
            raise ValueError("only a rotary model's cache can roll past its length")
        # One tensor per layer, (B, K, max_length, Dh): a decoding step reads and writes each
        # with `narrow`, a few microseconds fewer per layer than indexing one 5-D tensor.
        shape = (batch_size, config.n_kv_head, max_length, config.head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.position = 0  # the next token's position in the whole sequence
        self.max_length = max_length
        self.rolling = rolling

    @staticmethod
    def can_roll(config: ModelConfig) -> bool:
        """Whether a cache of this model may roll past the context: rotary positions only."""
        return config.position == "rope"

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's k, v (B, K, T, Dh) for `layer`; return the keys/values it may attend to.

        Until the cache is full they are in position order, ending with the new ones; once a
        rolling cache wraps, they are the last `max_length` positions in slot order.
        """
        keys, values, new = self.keys[layer], self.values[layer], k.size(2)
        end = self.position + new
        if end <= self.max_length:
            keys.narrow(2, self.position, new).copy_(k)
            values.narrow(2, self.position, new).copy_(v)
            return keys.narrow(2, 0, end), values.narrow(2, 0, end)
        if not self.rolling or k.size(2) != 1:
            raise ValueError(f"KV cache full: {end} positions > {self.max_length}"
                             + (" (a rolling cache takes one position at a time past its length)"
                                if self.rolling else ""))
        slot = self.position % self.max_length  # the oldest position's slot
        keys.narrow(2, slot, 1).copy_(k)
        values.narrow(2, slot, 1).copy_(v)
        return keys, values

    def advance(self, n: int) -> None:
        self.position += n

    def repeat_batch(self, n: int) -> None:
        """Turn a batch-1 cache into n identical rows (one prompt, n samples: prefill once)."""
        self.keys = [k.repeat(n, 1, 1, 1) for k in self.keys]
        self.values = [v.repeat(n, 1, 1, 1) for v in self.values]


class RMSNorm(nn.Module):
    """x / rms(x) * weight: like LayerNorm without centring or bias."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)  # one fused kernel
        # Under bf16 autocast, normalise in float32 as Llama does: cheap, and stable.
        return F.rms_norm(x.float(), (x.size(-1),), self.weight.float(), self.eps).to(x.dtype)


def make_norm(config: ModelConfig) -> nn.Module:
    """Llama's RMSNorm, or GPT-2's LayerNorm (also subtracts the mean, and adds a learned bias)."""
    if config.norm == "layernorm":
        return nn.LayerNorm(config.d_model, eps=config.norm_eps)
    return RMSNorm(config.d_model, config.norm_eps)


def rope_frequencies(config: ModelConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """Rotation speed (radians per position) of each of the Dh/2 pairs: theta^(-i / (Dh/2)).

    With Llama 3.1's scaling (`rope_scaling_factor` > 1), pairs whose wavelength exceeds the
    original context / low_freq_factor turn `factor` times slower, those shorter than original
    context / high_freq_factor are unchanged, and those between are blended linearly in
    (original context / wavelength), as transformers' "llama3" RoPE does.
    """
    half = config.head_dim // 2
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, half, device=device, dtype=torch.float32) / half))
    factor = config.rope_scaling_factor
    if factor == 1.0:
        return inv_freq
    low, high, original = config.rope_low_freq_factor, config.rope_high_freq_factor, config.rope_original_context
    wavelength = 2 * math.pi / inv_freq
    slow = wavelength > original / low
    fast = wavelength < original / high
    blend = (original / wavelength - low) / (high - low)  # 0 at the slow edge, 1 at the fast edge
    blended = (1 - blend) * inv_freq / factor + blend * inv_freq
    return torch.where(slow, inv_freq / factor, torch.where(fast, inv_freq, blended))


def rope_tables(config: ModelConfig, length: int, device: torch.device | str = "cpu",
                start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (length, Dh/2) of the rotation angle of positions start..start+length-1 for each frequency."""
    inv_freq = rope_frequencies(config, device)
    positions = torch.arange(start, start + length, device=device, dtype=torch.float32)
    angles = torch.outer(positions, inv_freq)  # (T, Dh/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[i], x[i + Dh/2]) of x (B, T, heads, Dh) by its position's angle.

    This is Llama's "rotate half" layout; cos and sin are (T, Dh/2).
    """
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos[:, None, :], sin[:, None, :]  # (T, 1, Dh/2): the same angle for every head
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


class Linear(nn.Linear):
    """nn.Linear whose products can run on another float32 kernel while training
    (`matmul_kernel`, set by `GPT.set_matmul_kernel`; `glassgpt.matmul.linear` says when)."""

    matmul_kernel = "aten"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias, self.matmul_kernel)


class Attention(nn.Module):
    """Causal multi-head (or grouped-query) self-attention, with rotary positions or none (GPT-2's
    positions are added to the embeddings before the first block)."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        # One matmul for q, k and v together: fewer, larger matmuls are faster on a CPU.
        self.qkv = Linear(config.d_model, (config.n_head + 2 * config.n_kv_head) * config.head_dim,
                          bias=config.bias)
        self.out = Linear(config.n_head * config.head_dim, config.d_model, bias=config.bias)
        # QK-clip (`glassgpt.train.optim.clip_attention_logits`) sets this while training: training
        # forwards then keep their heads' largest attention logits in `max_logit` (H,) until the
        # clip reads and clears it.
        self.track_max_logit = False
        self.max_logit: torch.Tensor | None = None

    def qkv_heads(self, x: torch.Tensor, cos: torch.Tensor | None,
                  sin: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, D) -> q (B, H, T, Dh), k (B, K, T, Dh), v (B, K, T, Dh); q and k rotated.

        The one place the model makes its queries, keys and values: `forward` calls it, and so
        does `glassgpt.explain.look.trace`, so what the look views show is the model's own math.
        cos and sin are (T, Dh/2) rows of the RoPE tables for these positions, or None for a
        model with learned positions (nothing to rotate).
        """
        B, T, _ = x.shape
        H, K = self.n_head, self.n_kv_head
        # Views, not copies (`narrow`: the fewest framework calls, which a decoding step pays for
        # in every layer).
        qkv = self.qkv(x).view(B, T, H + 2 * K, self.head_dim)  # (B, T, H + K + K, Dh)
        qk, v = qkv.narrow(2, 0, H + K), qkv.narrow(2, H + K, K)
        if cos is not None and sin is not None:
            qk = apply_rope(qk, cos, sin)  # queries and keys rotated together: one kernel, not two
        q = qk.narrow(2, 0, H).transpose(1, 2)  # (B, H, T, Dh)
        k = qk.narrow(2, H, K).transpose(1, 2)  # (B, K, T, Dh)
        return q, k, v.transpose(1, 2)  # v (B, K, T, Dh)

    def forward(self, x: torch.Tensor, cos: torch.Tensor | None, sin: torch.Tensor | None,
                kv_cache: KVCache | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv_heads(x, cos, sin)
        if self.track_max_logit and self.training and kv_cache is None:
            largest = max_attention_logits(q, k)  # kept over a step's micro-batches until the clip reads it
            self.max_logit = largest if self.max_logit is None else torch.maximum(self.max_logit, largest)

        past = 0
        if kv_cache is not None:
            past = kv_cache.position
            k, v = kv_cache.update(self.layer, k, v)  # (B, K, past + T, Dh)
        # Grouped-query attention: each group of n_head / n_kv_head query heads shares one
        # key/value head. SDPA pairs them itself (`enable_gqa`), the same numbers as repeating
        # each key/value head per query head, without copying the cache: at one new token, 12
        # query heads on 4 kv heads and 512 cached positions, 65 us a layer instead of 147.
        gqa = self.n_kv_head != self.n_head
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, enable_gqa=gqa)
        elif T == 1:  # one new token sees everything before it
            y = F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
        else:
            # New positions past..past+T-1 may see every cached position and the new ones up to
            # themselves.
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # (B, T, H * Dh)
        return self.out(y)


@torch.no_grad()
def max_attention_logits(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Each query head's largest causal attention logit q.k / sqrt(Dh) over a batch: (H,).

    q (B, H, T, Dh), k (B, K, T, Dh). The scores are computed again here (SDPA never shows them):
    a few percent of a training step's FLOPs, spent only when QK-clip asks for them.
    """
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)  # (B, H, T, Dh)
    scores = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5  # (B, H, T, T)
    T = scores.shape[-1]
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    return scores.masked_fill(~causal, float("-inf")).amax(dim=(0, 2, 3))


class FeedForward(nn.Module):
    """Applied to each position independently. SwiGLU (Llama): down(silu(gate(x)) * up(x));
    GELU (GPT-2): down(gelu(up(x))), with GELU's tanh approximation as GPT-2 was trained."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.hidden = config.mlp_hidden
        self.gated = config.mlp == "swiglu"
        if self.gated:
            self.gate_up = Linear(config.d_model, 2 * config.mlp_hidden, bias=config.bias)  # gate and up fused
        else:
            self.up = Linear(config.d_model, config.mlp_hidden, bias=config.bias)
            # A module, not a call, so that int8 decoding can fold it into `up`'s kernel
            # (`glassgpt.quantize`) and leave an identity here.
            self.act = nn.GELU(approximate="tanh")
        self.down = Linear(config.mlp_hidden, config.d_model, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.gated:
            return self.down(self.act(self.up(x)))
        gate, up = self.gate_up(x).split(self.hidden, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    """One transformer layer: x + attention(norm(x)), then x + feed_forward(norm(x))."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.attn_norm = make_norm(config)
        self.attn = Attention(config, layer)
        self.mlp_norm = make_norm(config)
        self.mlp = FeedForward(config)
        # int8 decoding (`glassgpt.quantize.FusedBlockStep`) may set this: the same layer for one new
        # token at batch 1, in one compiled call (x (1, 1, D), cache) -> x, writing the cache.
        self.decode_step: Callable[[torch.Tensor, KVCache], torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, cos: torch.Tensor | None, sin: torch.Tensor | None,
                kv_cache: KVCache | None = None) -> torch.Tensor:
        if (self.decode_step is not None and kv_cache is not None and x.shape[0] == x.shape[1] == 1
                and kv_cache.position < kv_cache.max_length):
            return self.decode_step(x, kv_cache)
        x = x + self.attn(self.attn_norm(x), cos, sin, kv_cache)
        x = x + self.mlp(self.mlp_norm(x))
        return x


# The weights that write into the residual stream (attention's output, the MLP's down
# projection): GPT-2 scales their init down by depth; TrainConfig.residual_init can zero them.
RESIDUAL_OUTPUTS = ("attn.out.weight", "mlp.down.weight")


@dataclass
class ModelOutput:
    """What one forward pass returns: logits (B, T, V) without targets, the mean loss with them.

    With targets the logits are None: the loss is computed without them (`ChunkedCrossEntropy`).
    """

    logits: torch.Tensor | None
    loss: torch.Tensor | None = None


class GPT(nn.Module):
    """The language model: token ids in, next-token logits out."""

    matmul_kernel = "aten"  # training's float32 matmuls (`set_matmul_kernel`)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.rotary = config.position == "rope"
        if not self.rotary:  # GPT-2: one learned vector per position, added to the token's
            self.pos_embed = nn.Embedding(config.context_length, config.d_model)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.final_norm = make_norm(config)
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        if self.rotary:
            cos, sin = rope_tables(config, config.context_length)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """GPT-2-style init: N(0, 0.02); projections into the residual stream scaled down by depth;
        norm gains 1, biases 0."""
        residual_std = 0.02 / (2 * self.config.n_layer) ** 0.5
        for name, param in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(param)
            elif name.endswith(".bias"):
                nn.init.zeros_(param)
            elif name.endswith(RESIDUAL_OUTPUTS):
                nn.init.normal_(param, std=residual_std, generator=generator)
            else:
                nn.init.normal_(param, std=0.02, generator=generator)

    def zero_residual_outputs(self) -> None:
        """Zero the projections into the residual stream (modded-nanogpt's init): every block starts
        as the identity, and the others' weights get gradients from the second step on."""
        with torch.no_grad():
            for name, param in self.named_parameters():
                if name.endswith(RESIDUAL_OUTPUTS):
                    param.zero_()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights are counted once

    def set_matmul_kernel(self, kernel: str) -> None:
        """Train the linear layers and the output layer's loss on `kernel` ("aten" or "onednn",
        `glassgpt.matmul.choose_matmul_kernel`); evaluation and generation are not affected."""
        self.matmul_kernel = kernel
        for module in self.modules():
            if isinstance(module, Linear):
                module.matmul_kernel = kernel

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None,
                kv_cache: KVCache | None = None, logits_to_keep: int = 0) -> ModelOutput:
        """ids (B, T) -> logits (B, T, V); with targets (B, T), the mean cross-entropy instead.

        Targets equal to -1 are ignored in the loss. Training only needs the loss, so with targets
        the (B, T, V) logits are never made (`ChunkedCrossEntropy`) and `logits` is None: call
        without targets to get them. With a `kv_cache`, `ids` are the positions after those
        already cached, and the cache is advanced past them. `logits_to_keep` = n > 0 scores only
        the last n positions (B, n, V), as transformers' argument of that name: a prompt read
        before generating needs the next-token scores of its last position only, and the output
        layer is the largest matmul of a small model (GPT-2's: 39M of its 124M weights).
        """
        B, T = ids.shape
        start = kv_cache.position if kv_cache is not None else 0
        rolling = kv_cache is not None and kv_cache.rolling
        if start + T > self.config.context_length and not rolling:
            raise ValueError(f"sequence of {start + T} tokens exceeds the context of {self.config.context_length}")
        x = self.embed(ids)  # (B, T, D)
        if self.rotary:
            if start + T <= len(self.rope_cos):
                cos, sin = self.rope_cos[start:start + T], self.rope_sin[start:start + T]  # (T, Dh/2)
            else:  # a rolling cache past the context: these positions' rows, made as the table's are
                cos, sin = rope_tables(self.config, T, ids.device, start)
        else:
            cos = sin = None
            x = x + self.pos_embed(torch.arange(start, start + T, device=ids.device))  # (T, D), same for every row
        for block in self.blocks:
            x = block(x, cos, sin, kv_cache)
        x = self.final_norm(x)
        if kv_cache is not None:
            kv_cache.advance(T)

        if targets is None:
            return ModelOutput(self.lm_head(x[:, -logits_to_keep:] if logits_to_keep else x))
        # The output layer and the loss together, a few rows at a time (see below).
        loss = ChunkedCrossEntropy.apply(x.reshape(B * T, -1), self.lm_head.weight, targets.reshape(B * T),
                                         loss_chunk_rows(self.lm_head.weight.shape[0]), torch.is_grad_enabled(),
                                         self.matmul_kernel)
        return ModelOutput(None, loss)


# Logits per chunk of the training loss (2**25: 128 MB in float32, 4,096 rows of an 8,192-token
# vocabulary, 667 of GPT-2's), measured with `python benchmarks/bench_loss_chunks.py --rows
# 256,512,1024,2048,4096` on the 2-core CPU, with malloc keeping freed memory as the training
# commands make it (medians): the small preset's output layer + loss 836 ms in 512-row chunks,
# 781 in 2,048, 768 in 4,096; whole training steps interleaved (a one-off A/B, spreads 8-22%):
# compiled small +2.6% tokens/s with 4,096 rows against 512, the demo +1.5%. (Before malloc
# kept memory, 512 rows were fastest: a larger chunk's logits were fresh pages from the OS at
# every chunk.) A budget in logits, not rows, keeps a large vocabulary's chunks as small.
LOSS_CHUNK_LOGITS = 2**25


def loss_chunk_rows(vocab_size: int) -> int:
    """Rows of the flattened (B*T, D) hidden states per chunk of the training loss."""
    return max(1, LOSS_CHUNK_LOGITS // vocab_size)


# The loss reads log p[target] as log(softmax[target]); below this (p < 2e-35, near float32's
# smallest normal number) that loses precision or is -inf, so such rows are computed exactly.
LOG_TINY = -80.0


def target_log_probs(p: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
                     sync_free: bool | None = None) -> torch.Tensor:
    """log p[target] of each row (c,), read off the softmax p (c, V) of `logits`; a row where
    p[target] is below float32's normal range gets it exactly, target logit - logsumexp(logits).

    On a CPU only those rows are recomputed. Finding them costs a GPU a host synchronisation per
    chunk, so there (`sync_free`, default: off the CPU) every row's exact value is computed and
    kept where needed.
    """
    def exact(rows_logits: torch.Tensor, rows_targets: torch.Tensor) -> torch.Tensor:
        return rows_logits.gather(1, rows_targets[:, None])[:, 0] - torch.logsumexp(rows_logits, dim=-1)

    if sync_free is None:
        sync_free = p.device.type != "cpu"
    log_p = p.gather(1, targets[:, None])[:, 0].log()
    underflow = log_p < LOG_TINY
    if sync_free:
        return torch.where(underflow, exact(logits, targets), log_p)
    if underflow.any():
        far = underflow.nonzero()[:, 0]
        log_p[far] = exact(logits[far], targets[far])
    return log_p


class ChunkedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of the logits h @ weight.T (h is (N, D), weight (V, D)), made in chunks.

    Why: training needs the loss and its gradients, not the logits. `lm_head` followed by
    `F.cross_entropy` makes all N x V logits (under bf16 autocast also a float32 copy), their
    log-softmax and, in backward, as many gradients: at 4096 tokens and a 4096-token vocabulary
    that is 64 MB per float32 array, allocated, written and read again. Here `chunk_rows` rows of h are taken at a time,
    so only one chunk's logits exist at once.

    Per chunk: logits = h_c @ weight.T, p = softmax(logits) and the loss terms -log p[target]
    (a softmax computes each exp once; log_softmax followed by exp did it twice, ~20% slower; rows
    whose p[target] underflows get log p from logsumexp). The gradients need p, so while it is at
    hand (when gradients are wanted)
    they are made in the same pass: with g = p - onehot(target) and n the targets that count,
        grad h_c = g @ weight / n,    grad weight += g.T @ h_c / n
    (the 1/n, 0 for an ignored row, is applied to h_c and to grad h, not to the big g).
    `backward` then only scales them by the incoming gradient: three matmuls as in the plain
    path, where recomputing the logits in backward would take a fourth (the price: a loss
    computed with gradients on is as costly whether or not backward follows; under
    `torch.no_grad` the gradient work is skipped). Targets equal to -1
    count neither in the loss nor in n (`F.cross_entropy(..., ignore_index=-1)`; all ignored
    gives nan, as there).

    The matmuls run in autocast's dtype when autocast is on (as `lm_head` would), everything
    else in float32 (float64 stays float64), as `F.cross_entropy(logits.float())` did. With a
    tied `lm_head` the weight's gradient adds to the embedding's, like any shared parameter.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_rows: int,
                need_grads: bool, matmul_kernel: str = "aten") -> torch.Tensor:
        device = h.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else h.dtype
        acc = torch.promote_types(dtype, torch.float32)  # for the softmax and the sums
        # As `glassgpt.matmul.linear`: another kernel only for float32 training on a CPU.
        kernel = matmul_kernel if need_grads and device == "cpu" and dtype == torch.float32 else "aten"
        w = weight.to(dtype)
        counts = targets != -1
        share = counts.to(acc) / counts.sum()  # each row's weight in the mean: 1/n, or 0 if ignored
        targets = torch.where(counts, targets, 0)  # ignored rows point anywhere: their share is 0
        picked = torch.empty(len(h), dtype=acc, device=h.device)  # log p[target] of each row
        if need_grads:
            h_share = (h * share[:, None]).to(dtype)
            grad_h = torch.empty(h.shape, dtype=dtype, device=h.device)  # g @ weight; scaled in backward
            grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device)
        for start in range(0, len(h), chunk_rows):
            # Free the last chunk's (c, V) arrays before this chunk's are made, so that only one
            # chunk's exist at once and the allocator hands their memory straight back.
            logits = p = g = None
            rows = slice(start, start + chunk_rows)
            t_c = targets[rows]
            logits = mm_nt(h[rows].to(dtype), w, kernel).to(acc)  # (c, V)
            p = torch.softmax(logits, dim=-1)  # one exp per logit: log p[target] is read from it
            picked[rows] = target_log_probs(p, logits, t_c)
            if need_grads:
                g = p
                g[torch.arange(len(t_c), device=g.device), t_c] -= 1  # p - onehot, still in float32
                g = g.to(dtype)
                if kernel != "aten":
                    grad_h[rows] = mm_nt(g, w.t(), kernel)
                    grad_w += weight_grad(g, h_share[rows], kernel)
                    continue
                torch.mm(g, w, out=grad_h[rows])
                if grad_w.dtype == dtype:
                    grad_w.addmm_(g.t(), h_share[rows])
                else:  # bf16 products, summed over the chunks in float32
                    grad_w += g.t() @ h_share[rows]
        if need_grads:
            ctx.save_for_backward(grad_h, share, grad_w)
            ctx.dtypes = h.dtype, weight.dtype
        return -(picked * share).sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: torch.Tensor):
        grad_h, share, grad_w = ctx.saved_tensors
        h_dtype, weight_dtype = ctx.dtypes
        return ((grad_h * (share * grad_loss)[:, None]).to(h_dtype), (grad_w * grad_loss).to(weight_dtype),
                None, None, None, None)
