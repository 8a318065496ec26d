"""Which kernel multiplies float32 matrices in CPU training: PyTorch's default or oneDNN's.

PyTorch sends a CPU float32 matmul to its BLAS (Intel's MKL in the official wheels), which on AMD
CPUs takes its AVX2 code even where the CPU has AVX-512, unless `glassgpt.mkl_on_amd` has let it
choose by instruction set (the `glassgpt` command does, before torch loads). Held back, on the
2-core AMD EPYC (AVX-512) this project is measured on, the best call of a 1024^3 matmul ran at
230 GFLOP/s through `torch.mm` and at 507 through oneDNN (bundled with PyTorch, which picks its
code by the instructions a CPU has), with the same float32 results (`benchmarks/bench_matmul.py`;
README, "Training on this CPU"); let choose, MKL ran 438-454, and whole training steps ~1.1x
oneDNN's. So training can run its linear layers and its output layer's loss on oneDNN (`linear`,
`mm_nt`, `weight_grad` with kernel "onednn"), and `choose_matmul_kernel` measures at start-up
which kernel is faster here (held to AVX2, oneDNN still trained 1.07-1.22x faster than MKL's
AVX2 code).

Only training uses it: under `torch.no_grad` (evaluation, generation) `linear` keeps PyTorch's
own path, as do bf16 autocast (whose matmuls PyTorch already sends to oneDNN) and GPUs. The oneDNN
product is one opaque custom operator (`glassgpt::onednn_mm_nt`), which `torch.compile` calls as
it is (Inductor cannot lower oneDNN's linear on tensors that are not constant weights).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from glassgpt.config import MATMUL_SETTINGS
from glassgpt.errors import GlassError
from glassgpt.mkl_on_amd import mkl_code_name, why_not_fast_code

#: oneDNN is chosen only when it is clearly faster: each kernel's best of a few calls must differ
#: by more than a busy moment can make them differ (12 probes in a row here read 1.14-1.18x with
#: oneDNN held to AVX2, `ONEDNN_MAX_CPU_ISA=AVX2`, as on CPUs without AVX-512, where whole
#: training steps ran 1.07-1.22x faster on it; 2.2x with AVX-512. README, "Training on this CPU").
ONEDNN_MIN_SPEEDUP = 1.1


def onednn_available() -> bool:
    """Whether this PyTorch has oneDNN's float32 linear (CPU builds with MKL-DNN do)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b.T through oneDNN's linear, called directly (a (M, K), b (N, K), any strides, fast for
    contiguous matrices and their transposes; float32 on a CPU): for code inside an operator of
    its own, which `torch.compile` need not see into."""
    return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")


@torch.library.custom_op("glassgpt::onednn_mm_nt", mutates_args=())
def onednn_mm_nt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b.T through oneDNN (a (M, K), b (N, K), any strides; float32 on a CPU)."""
    return onednn_product(a, b)


@onednn_mm_nt.register_fake
def _onednn_mm_nt_shape(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.new_empty(a.shape[0], b.shape[0])


def mm_nt(a: torch.Tensor, b: torch.Tensor, kernel: str) -> torch.Tensor:
    """a @ b.T with `kernel` ("aten": PyTorch's own)."""
    return onednn_mm_nt(a, b) if kernel == "onednn" else a @ b.t()


def weight_grad(grad_out: torch.Tensor, x: torch.Tensor, kernel: str) -> torch.Tensor:
    """grad_out.T @ x, (M, N) and (M, K) -> (N, K): a linear layer's weight gradient.

    oneDNN ran this 1.4-2.2x faster (a one-off script, `small`'s shapes) with the narrower side
    as the rows of its output (x.T @ g, transposed back, when N >= K) than the other way round;
    both are exact products."""
    if kernel != "onednn":
        return grad_out.t() @ x
    if grad_out.shape[1] >= x.shape[1]:
        return onednn_mm_nt(x.t(), grad_out.t()).t()
    return onednn_mm_nt(grad_out.t(), x.t())


class _OneDnnLinear(torch.autograd.Function):
    """F.linear with its three products on oneDNN."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])  # (M, K)
        out = onednn_mm_nt(rows, weight)  # (M, N)
        if bias is not None:
            out = out + bias
        ctx.save_for_backward(rows, weight)
        ctx.input_shape, ctx.has_bias = x.shape, bias is not None
        return out.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        rows, weight = ctx.saved_tensors
        grad_rows = grad.reshape(-1, grad.shape[-1])  # (M, N)
        grad_x = onednn_mm_nt(grad_rows, weight.t()).view(ctx.input_shape)  # grad @ W
        grad_w = weight_grad(grad_rows, rows, "onednn").contiguous()
        return grad_x, grad_w, grad_rows.sum(0) if ctx.has_bias else None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, kernel: str) -> torch.Tensor:
    """F.linear; with kernel "onednn", on oneDNN when gradients are on, x is float32 on a CPU and no
    autocast applies (everywhere else PyTorch's own path, whatever `kernel` says)."""
    if (kernel == "onednn" and torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
            and weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")):
        return _OneDnnLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


@dataclass(frozen=True)
class MatmulChoice:
    """The kernel training's float32 matmuls use, and why (for the log)."""

    kernel: str
    reason: str

    def describe(self) -> str:
        """The training log's line about the choice ("" where there was none to make: GPUs, bf16)."""
        if not self.reason:
            return ""
        return f"float32 matmuls: {self.kernel} ({self.reason}; --matmul aten|onednn to choose)"


def check_matmul_setting(setting: str, device: torch.device, dtype_setting: str) -> None:
    """Refuse, in one line, a kernel setting that cannot apply: called before a run starts, so that
    nothing is written for it. `dtype_setting` is `TrainConfig.dtype` ("auto", "bf16", "fp32")."""
    if setting not in MATMUL_SETTINGS:  # TrainConfig refuses it first; a direct call gets the same line
        raise GlassError(f"matmul must be one of {', '.join(MATMUL_SETTINGS)}, got {setting!r}")
    if setting != "onednn":
        return
    if device.type != "cpu" or dtype_setting == "bf16":
        raise GlassError("--matmul onednn is for float32 training on CPUs: add --dtype fp32 (on a CPU), or "
                         "leave --matmul at auto (bf16 matmuls already run on oneDNN)")
    if not onednn_available():
        raise GlassError("this PyTorch has no oneDNN float32 linear: use --matmul aten (or auto)")


def choose_matmul_kernel(setting: str, device: torch.device, dtype: torch.dtype) -> MatmulChoice:
    """The kernel for `setting` ("auto", "aten" or "onednn", checked by `check_matmul_setting`)
    when training in `dtype` on `device`.

    Only CPU float32 training has a choice (with `--dtype auto` resolved to bf16, "onednn" falls
    back to PyTorch's path, whose bf16 matmuls are oneDNN's). "auto" times both kernels on a
    matmul of the presets' shapes (best of interleaved rounds) and takes oneDNN when it is at
    least `ONEDNN_MIN_SPEEDUP` x faster."""
    check_matmul_setting(setting, device, "fp32" if dtype == torch.float32 else "auto")
    if device.type != "cpu" or dtype != torch.float32:
        return MatmulChoice("aten", "")  # nothing to choose: GPUs and bf16 autocast have their own paths
    if setting == "aten" or not onednn_available():
        return MatmulChoice("aten", ("as asked" if setting == "aten" else "no oneDNN float32 linear here") + _mkl_note())
    if setting == "onednn":
        return MatmulChoice("onednn", "as asked")
    speedup = onednn_speedup()
    if speedup >= ONEDNN_MIN_SPEEDUP:
        return MatmulChoice("onednn", f"measured {speedup:.1f}x PyTorch's own here")
    return MatmulChoice("aten", f"oneDNN measured {speedup:.2f}x PyTorch's own here" + _mkl_note())


def _mkl_note() -> str:
    """Which code PyTorch's own CPU kernel (MKL) runs, for the log: on AMD CPUs it depends on
    `glassgpt.mkl_on_amd.use_mkl_fast_code` having run before torch was imported, so its generic
    code comes with the reason that did not happen."""
    code = mkl_code_name()
    if not code:
        return ""
    why_not = why_not_fast_code() if code == "generic" else None
    return f"; MKL runs its {code} code" + (f" ({why_not})" if why_not else "")


def onednn_speedup(rounds: int = 3) -> float:
    """How many times faster oneDNN multiplies (4096 x 384) by (384 x 1024) than torch's own
    float32 matmul here (best call of each, interleaved; ~0.1 s)."""
    a, b = torch.randn(4096, 384), torch.randn(1024, 384)
    best = {"aten": float("inf"), "onednn": float("inf")}
    for _ in range(rounds + 1):  # the first round warms both up, and counts like the others
        for kernel in best:
            start = time.perf_counter()
            mm_nt(a, b, kernel)
            best[kernel] = min(best[kernel], time.perf_counter() - start)
    return best["aten"] / best["onednn"]


def peak_kernels(device: torch.device, dtype: torch.dtype) -> tuple[str, ...]:
    """The kernels whose best matmul rate is this device's peak in `dtype`: MFU's reference is the
    fastest of them, whichever the model uses."""
    if device.type == "cpu" and dtype == torch.float32 and onednn_available():
        return ("aten", "onednn")
    return ("aten",)
