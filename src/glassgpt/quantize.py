"""int8 decoding on a CPU: the model's linear layers with 8-bit weights, one scale per output row.

Decoding one token reads every weight once and does little arithmetic with it, so on a CPU its
speed is set by memory bandwidth: int8 weights are a quarter of float32's bytes. Three kernels
do this (`METHODS`):

  "avx2"         glassgpt's own (`kernels/int8_linear.cpp`, x86 CPUs with AVX2): int8 weights per
                 output row, each input row rounded to int8 with its own scale, and a loop built
                 to stream the weights at memory speed for 1-3 rows (decoding; more rows go to
                 fbgemm, see `AVX2Int8Linear`). PyTorch compiles it on first use (~15-30 s,
                 needs a C++ compiler and ninja) and keeps the build for later runs.
  "dynamic"      `torch.ao.quantization.quantize_dynamic` (fbgemm/x86): weights int8 per output
                 channel, and each call also rounds its input activations to int8 (one scale per
                 call), then an int8 x int8 matrix product.
  "weight-only"  `Int8Linear` here: int8 weights per output row, float activations; the product
                 is `torch._weight_int8pack_mm` (what int8 weight-only decoding uses on CPUs).

Only decoding changes: the run folder keeps its float weights and quantization happens at load
(`quantize_for_decoding`), in a fraction of a second. `best_method` picks "avx2" where the CPU
has AVX2 and the kernel builds, else "dynamic". The embedding table and norms stay float
(a lookup reads one row per token). The int8 weights are moved into one buffer on 2 MB pages
where Linux gives them (`weights_on_huge_pages`), and GPT-2's GELU into its up-projection's
kernel (`fuse_gelu`). `compare_with_float` measures what it costs in quality: bits per byte on
a text, and how often greedy continuations agree. benchmarks/decode.py measures the speed of
each.
"""

from __future__ import annotations

import copy
import functools
import mmap
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from glassgpt.config import ModelConfig
from glassgpt.errors import GlassError
from glassgpt.model import GPT, Block, FeedForward, KVCache
from glassgpt.runtime import build_cpu_extension

METHODS = ("avx2", "dynamic", "weight-only")
FALLBACK_METHOD = "dynamic"  # where "avx2" cannot run: any CPU PyTorch supports
KERNEL_SOURCE = Path(__file__).parent / "kernels" / "int8_linear.cpp"
KERNEL_NAME = "glassgpt_int8_linear"  # PyTorch's build folder for it (~/.cache/torch_extensions/...)


@functools.cache
def _build_kernel() -> ModuleType | str:
    """The compiled AVX2 kernel, or why it cannot be had (one line; decoding then falls back)."""
    return build_cpu_extension(KERNEL_NAME, KERNEL_SOURCE, ["-O3", "-mavx2", "-mfma", "-fopenmp"], "the AVX2 kernel")


def avx2_kernel() -> ModuleType:
    """The compiled kernel (`int8_linear`), built on first use; a GlassError says why not."""
    kernel = _build_kernel()
    if isinstance(kernel, str):
        raise GlassError(f"int8 method avx2 is not available: {kernel}; use method {FALLBACK_METHOD!r}")
    return kernel


def _kernel_needs_compiling() -> bool:
    """No build of this checkout's kernel on disk yet (PyTorch keeps one per kernel name, and
    rebuilds it when the source file it was built from is another one)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        build = Path(_get_build_directory(KERNEL_NAME, False))
        built_from_here = str(KERNEL_SOURCE) in (build / "build.ninja").read_text(encoding="utf-8")
        return not (built_from_here and any(build.glob("*.so")))
    except FileNotFoundError:
        return True
    except Exception:  # a private helper of PyTorch's: if it moves, just say nothing
        return False


def best_method(log: Callable[[str], None] | None = None) -> str:
    """"avx2" where it runs (building it on first use; `log` hears about the wait), else "dynamic"."""
    if log is not None and _build_kernel.cache_info().currsize == 0 and _kernel_needs_compiling():
        log("int8: compiling glassgpt's AVX2 kernel (once; 15-30 s)")
    reason = _build_kernel()
    if isinstance(reason, str):
        if log is not None:
            log(f"int8: {reason}; using PyTorch's fbgemm kernel instead")
        return FALLBACK_METHOD
    return "avx2"


class AVX2Int8Linear(nn.Module):
    """y = x W^T + b with W as int8 (one scale per output row) and x rounded to int8 per row.

    Up to `KERNEL_MAX_ROWS` input rows (decoding at batch 1-3) go through glassgpt's AVX2 kernel
    (`kernels/int8_linear.cpp`), which streams the weights at close to memory speed; more rows
    (larger batches, prefill) go to fbgemm's dynamic int8 linear, whose matrix-matrix loops win
    there. Both hold int8 weights of the same layer, so the layer keeps two int8 copies.
    """

    # Measured, all GPT-2 small linears (benchmarks/decode.py's model) on 2 Zen 2 cores, kernel vs
    # fbgemm: 1 row 4.99 vs 7.35 ms, 2 rows 6.17 vs 7.67, 4 rows 7.95 vs 7.50, 8 rows 12.95 vs 9.36.
    KERNEL_MAX_ROWS = 3

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        avx2_kernel()  # fail here, at load, rather than at the first token
        weight_int8, scale = quantize_rows(linear.weight)
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().contiguous())
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.batched = _dynamic_int8(linear)
        self.gelu = False  # apply GPT-2's GELU to the output (`fuse_gelu`)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() > self.KERNEL_MAX_ROWS * self.in_features:
            y = self.batched(x)
            return nn.functional.gelu(y, approximate="tanh") if self.gelu else y
        return avx2_kernel().int8_linear(x.float(), self.weight_int8, self.scale, self.bias, self.gelu).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, int8 x int8 "
                f"(AVX2 kernel up to {self.KERNEL_MAX_ROWS} rows, fbgemm above)" + (", then GELU" if self.gelu else ""))


def fuse_gelu(model: GPT) -> None:
    """Fold each GELU MLP's activation (GPT-2's) into its `up` layer's kernel, which applies it to
    its outputs while they are still in cache: one pass over the hidden activations fewer per
    layer and token (12 calls of ~12 us a token at GPT-2 small's 3,072, measured)."""
    for module in model.modules():
        if isinstance(module, FeedForward) and not module.gated and isinstance(module.up, AVX2Int8Linear):
            module.up.gelu = True
            module.act = nn.Identity()


def _dynamic_int8(linear: nn.Linear) -> nn.Module:
    """fbgemm's dynamic int8 linear for `linear` (int8 weights per output row, int8 activations)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; the kernels are still torch's.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        source = copy.copy(linear)  # `from_float` reads the qconfig off the module
        source.__class__ = nn.Linear  # and takes only nn.Linear itself, not the model's subclass
        source.qconfig = per_channel_dynamic_qconfig
        return DynamicInt8Linear.from_float(source)


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(W_int8, scale) with W ~ W_int8 * scale[:, None]: symmetric per row, the row's largest |w|
    maps to 127, so every row uses the full range."""
    weight = weight.detach().float()
    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
    return (weight / scale[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous(), scale.contiguous()


class Int8Linear(nn.Module):
    """y = x W^T + b with W as int8 and one float scale per output row: W ~ W_int8 * scale[:, None]."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight_int8, scale = quantize_rows(linear.weight)
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).contiguous()
        y = torch._weight_int8pack_mm(rows, self.weight_int8, self.scale.to(x.dtype))
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights per row"


def quantize_for_decoding(model: GPT, method: str | None = None, log: Callable[[str], None] | None = None) -> GPT:
    """`model` with every linear layer in int8 (`METHODS`; None = `best_method`), for generation on a CPU.

    Changes `model` in place and returns it. The result is for inference only: no gradients, and
    a training loss (which reads `lm_head.weight`) is not available.
    """
    if method is None:
        method = best_method(log)
    if method not in METHODS:
        raise GlassError(f"quantization method must be one of {', '.join(METHODS)}, got {method!r}")
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise GlassError("int8 decoding runs on the CPU: load the model with --device cpu "
                         "(on a GPU, bf16 is the fast choice)")
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise GlassError("int8 quantization starts from a float32 model: load the run without casting it")
    model.eval()
    layer = {"avx2": AVX2Int8Linear, "dynamic": _dynamic_int8, "weight-only": Int8Linear}[method]
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, layer(child))
    weights_on_huge_pages([m for m in model.modules() if isinstance(m, (AVX2Int8Linear, Int8Linear))])
    fuse_gelu(model)
    for block in model.blocks:
        if FusedBlockStep.fits(block, model.config):
            block.decode_step = FusedBlockStep(block, model)
    return model


class FusedBlockStep:
    """One new token through one int8 block at batch 1, in one call of the AVX2 kernel
    (`block_step`), for GPT-2's kind of block (LayerNorm, GELU, biases) or Llama's (RMSNorm, rotary
    positions, grouped-query attention, SwiGLU): the norms, the four int8 layers, the cache write
    and the attention.

    The block's own modules would make ~20 framework calls a layer for this, at 1.5-9 us each on
    this CPU: ~3 ms of a GPT-2 small token, as much as reading its weights. Same math, same
    parameter tensors (`Block.forward` calls this only for one token with room in the cache);
    tests compare it with the modules. It holds those tensors themselves, so loading weights into
    them in place reaches it; replacing them (or moving the model off the CPU, which int8
    decoding refuses anyway) would not.
    """

    def __init__(self, block: Block, model: GPT) -> None:
        attn, mlp = block.attn, block.mlp
        if model.rotary:
            self.norms = [block.attn_norm.weight, block.mlp_norm.weight]
            layers = (attn.qkv, attn.out, mlp.gate_up, mlp.down)
            self.linears = [t for layer in layers for t in (layer.weight_int8, layer.scale)]
            self.cos, self.sin = model.rope_cos, model.rope_sin  # tables tell the kernel: Llama's kind
        else:
            self.cos = self.sin = None
            self.norms = [block.attn_norm.weight, block.attn_norm.bias, block.mlp_norm.weight, block.mlp_norm.bias]
            layers = (attn.qkv, attn.out, mlp.up, mlp.down)
            self.linears = [t for layer in layers for t in (layer.weight_int8, layer.scale, layer.bias)]
        self.layer, self.n_head, self.eps = attn.layer, attn.n_head, block.attn_norm.eps

    @staticmethod
    def fits(block: Block, config: ModelConfig) -> bool:
        """GPT-2's kind of block (LayerNorm, learned positions, GELU folded into `up`, biases, as
        many key/value heads as query heads) or Llama's (RMSNorm, rotary positions, SwiGLU, no
        biases), with AVX2 int8 layers."""
        gpt2 = (config.norm == "layernorm" and config.position == "learned" and config.mlp == "gelu"
                and config.bias and config.n_kv_head == config.n_head)
        llama = config.norm == "rmsnorm" and config.position == "rope" and config.mlp == "swiglu" and not config.bias
        if not (gpt2 or llama):
            return False
        mlp = (block.mlp.up, block.mlp.down) if gpt2 else (block.mlp.gate_up, block.mlp.down)
        if not all(isinstance(layer, AVX2Int8Linear) for layer in (block.attn.qkv, block.attn.out, *mlp)):
            return False
        return block.mlp.up.gelu if gpt2 else True  # the kernel applies GPT-2's GELU in `up`: folded

    def __call__(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:
        return avx2_kernel().block_step(x, self.norms, self.linears, cache.keys[self.layer], cache.values[self.layer],
                                        self.cos, self.sin, cache.position, self.n_head, self.eps)


HUGE_PAGE = 2 * 2**20  # bytes: x86-64 Linux's transparent huge page


def huge_page_buffer(nbytes: int) -> torch.Tensor:
    """An int8 tensor of `nbytes` bytes, asking Linux to back it with 2 MB pages.

    Anonymous private memory, aligned to 2 MB and marked MADV_HUGEPAGE before it is touched, is
    what Linux's transparent huge pages take in their common "madvise" mode. Where that cannot be
    had (another OS, huge pages off) this is ordinary memory: the same numbers, only slower.
    The tensor keeps the mapping alive (`torch.frombuffer` holds a reference to it).
    """
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    private = getattr(mmap, "MAP_PRIVATE", None)
    if advice is None or private is None:
        return torch.empty(nbytes, dtype=torch.int8)
    mapping = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=private | mmap.MAP_ANONYMOUS)
    whole = torch.frombuffer(mapping, dtype=torch.int8)
    start = -whole.data_ptr() % HUGE_PAGE
    try:
        mapping.madvise(advice)
    except OSError:  # a kernel without transparent huge pages: plain pages
        pass
    return whole[start:start + nbytes]


def weights_on_huge_pages(layers: list[nn.Module]) -> None:
    """Move the `weight_int8` buffers of `layers` into one `huge_page_buffer`, in model order
    (the order decoding reads them), each starting on a 64-byte cache line.

    Decoding streams every weight once per token, and a hardware prefetcher stops at each page
    boundary (a TLB miss each time): on 2 MB pages there are 512 times fewer of them. Measured
    on GPT-2 small's 49 int8 linears back to back, 2 Zen 2 cores, interleaved in one process,
    three runs: 4.53, 5.63, 4.74 ms a token on huge pages; 5.17, 6.30, 5.47 on ordinary ones.
    """
    if not layers:
        return
    line = 64
    sizes = [-(-layer.weight_int8.numel() // line) * line for layer in layers]
    arena = huge_page_buffer(sum(sizes))
    offset = 0
    for layer, size in zip(layers, sizes, strict=True):
        weight = layer.weight_int8
        layer.weight_int8 = arena[offset:offset + weight.numel()].view(weight.shape).copy_(weight)
        offset += size


@dataclass(frozen=True)
class QuantizationQuality:
    """What int8 costs on one text: bits per byte both ways, and greedy agreement."""

    method: str
    bpb_float: float
    bpb_int8: float
    greedy_tokens: int  # tokens generated greedily by each model, over all prompts
    greedy_agreeing: int  # of those, how many were the same token at the same place

    @property
    def bpb_change(self) -> float:
        """Relative change of bits per byte (0.01 = 1% worse)."""
        return self.bpb_int8 / self.bpb_float - 1

    @property
    def greedy_agreement(self) -> float:
        return self.greedy_agreeing / max(1, self.greedy_tokens)


def compare_with_float(model: GPT, tokenizer, text: str, method: str | None = None, max_tokens: int = 32768,
                       prompts: int = 8, new_tokens: int = 32) -> QuantizationQuality:
    """Bits per byte of `model` (float32, CPU) and of an int8 copy on `text`, and greedy agreement:
    `prompts` prompts cut from the text, each continued by `new_tokens` greedy tokens by both."""
    from glassgpt.engine import Engine, SamplingConfig
    from glassgpt.evaluate import evaluate, token_byte_lengths

    ids = np.asarray([tokenizer.bos_id, *tokenizer.encode(text)], dtype=np.int64)
    if len(ids) < 2 * prompts + 2:
        raise GlassError("the text is too short to compare the models: give a longer one")
    method = best_method() if method is None else method
    quantized = quantize_for_decoding(copy.deepcopy(model), method)
    lengths, cpu = token_byte_lengths(tokenizer), torch.device("cpu")
    bpb = [evaluate(m, ids, lengths, max_tokens, torch.float32, cpu).bpb for m in (model, quantized)]
    context = model.config.context_length
    prompt_length = max(1, min(context // 2, len(ids) // (2 * prompts)))
    starts = np.linspace(0, len(ids) - prompt_length, prompts).astype(int)
    greedy = SamplingConfig(temperature=0, max_new_tokens=new_tokens, stop_at_eos=False)
    total = agreeing = 0
    for start in starts:
        prompt = ids[start:start + prompt_length].tolist()
        a, b = (Engine(m, tokenizer).generate_ids(prompt, greedy).samples[0].token_ids for m in (model, quantized))
        total += len(a)
        agreeing += sum(x == y for x, y in zip(a, b, strict=True))
    return QuantizationQuality(method, bpb[0], bpb[1], total, agreeing)
