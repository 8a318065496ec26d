"""int8 decoding on a CPU: the model's linear layers with 8-bit weights, one scale per output row.

Decoding one token reads every weight once and does little arithmetic with it, so on a CPU its
speed is set by memory bandwidth: int8 weights are a quarter of float32's bytes. Two PyTorch
kernels do this (`METHODS`):

  "dynamic"      `torch.ao.quantization.quantize_dynamic` (fbgemm/x86): weights int8 per output
                 channel, and each call also rounds its input activations to int8 (one scale per
                 call), then an int8 x int8 matrix product.
  "weight-only"  `Int8Linear` here: int8 weights per output row, float activations; the product
                 is `torch._weight_int8pack_mm` (what int8 weight-only decoding uses on CPUs).

Only decoding changes: the run folder keeps its float weights and quantization happens at load
(`quantize_for_decoding`), in a fraction of a second. The embedding table and norms stay float
(a lookup reads one row per token). `compare_with_float` measures what it costs in quality:
bits per byte on a text, and how often greedy continuations agree. benchmarks/decode.py
measures the speed of each.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from glassgpt.errors import GlassError
from glassgpt.model import GPT

METHODS = ("dynamic", "weight-only")
DEFAULT_METHOD = "dynamic"


class Int8Linear(nn.Module):
    """y = x W^T + b with W as int8 and one float scale per output row: W ~ W_int8 * scale[:, None]."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        # Symmetric per row: the row's largest |w| maps to 127, so every row uses the full range.
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        self.register_buffer("weight_int8", (weight / scale[:, None]).round().clamp(-127, 127).to(torch.int8))
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


def quantize_for_decoding(model: GPT, method: str = DEFAULT_METHOD) -> GPT:
    """`model` with every linear layer in int8 (`METHODS`), for generation on a CPU.

    Changes `model` in place and returns it. The result is for inference only: no gradients, and
    a training loss (which reads `lm_head.weight`) is not available.
    """
    if method not in METHODS:
        raise GlassError(f"quantization method must be one of {', '.join(METHODS)}, got {method!r}")
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise GlassError("int8 decoding runs on the CPU: load the model with --device cpu "
                         "(on a GPU, bf16 is the fast choice)")
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise GlassError("int8 quantization starts from a float32 model: load the run without casting it")
    model.eval()
    if method == "dynamic":
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        with warnings.catch_warnings():
            # torch.ao.quantization announces its move to torchao; the kernels are still torch's.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
        return model
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int8Linear(child))
    return model


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


def compare_with_float(model: GPT, tokenizer, text: str, method: str = DEFAULT_METHOD, max_tokens: int = 32768,
                       prompts: int = 8, new_tokens: int = 32) -> QuantizationQuality:
    """Bits per byte of `model` (float32, CPU) and of an int8 copy on `text`, and greedy agreement:
    `prompts` prompts cut from the text, each continued by `new_tokens` greedy tokens by both."""
    from glassgpt.engine import Engine, SamplingConfig
    from glassgpt.evaluate import evaluate, token_byte_lengths

    ids = np.asarray([tokenizer.bos_id, *tokenizer.encode(text)], dtype=np.int64)
    if len(ids) < 2 * prompts + 2:
        raise GlassError("the text is too short to compare the models: give a longer one")
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
