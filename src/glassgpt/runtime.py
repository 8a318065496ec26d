"""The runtime: where and how tensors run, in one place.

Owns the device choice, the dtype choice and its autocast, `torch.compile`, building C++ kernels
for x86 CPUs (`build_cpu_extension`), seeding, how the C library's malloc keeps freed memory for
training, and multi-process training: the process
group (gloo on CPUs, NCCL on GPUs) that `torchrun` starts, the rank, printing from rank 0 only,
the few collectives the training loop needs, and the wrapping of a model for
DistributedDataParallel or FSDP2.

Nothing here reads the environment: the CLI reads torchrun's variables (RANK, WORLD_SIZE,
LOCAL_RANK) and passes them in as a `Distributed`.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import functools
import gc
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from glassgpt.errors import GlassError
from glassgpt.matmul import mm_nt, peak_kernels

T = TypeVar("T")

Log = Callable[[str], None]


@dataclass(frozen=True)
class Distributed:
    """Which process this is among those training together (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the process's index on its own machine: picks its GPU

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise GlassError(f"rank {self.rank} is outside a world of {self.world_size} processes")

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder and prints; the others only compute."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Distributed:
        """From torchrun's variables (the CLI passes `os.environ`); absent = one process."""
        try:
            return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
        except ValueError:
            raise GlassError("RANK, WORLD_SIZE and LOCAL_RANK must be integers: start with torchrun") from None


SINGLE = Distributed()


def resolve_device(name: str = "auto", distributed: Distributed = SINGLE) -> torch.device:
    """'auto' (a GPU if PyTorch sees one), 'cpu', 'cuda' or 'cuda:N'; each process gets its own GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GlassError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GlassError("--device cuda asked for, but this PyTorch sees no CUDA GPU: use --device cpu")
        if device.index is None:
            device = torch.device("cuda", distributed.local_rank % torch.cuda.device_count())
    elif device.type != "cpu":
        raise GlassError(f"device {name!r} is not supported: use cpu, cuda, cuda:N or auto")
    return device


DTYPE_PROBE_ROUNDS = 5  # interleaved timing rounds of "auto"; the best of each counts
STEP_PROBE_ROUNDS = 2  # rounds of the model's own step in each dtype, after one more that warms up
STEP_MIN_SPEEDUP = 1.1  # how much faster bf16's step must be: more than a busy moment sways two steps


def choose_dtype(setting: str, device: torch.device,
                 step_seconds: Callable[[torch.dtype], float] | None = None) -> torch.dtype:
    """bf16 autocast or plain fp32. "auto" times a matmul in both: many CPUs emulate bf16 slowly.
    fp32 is timed on each kernel that can multiply it here (`glassgpt.matmul.peak_kernels`) and
    its fastest counts, as training takes the faster one (`--matmul auto`).

    Where that favours bf16 on a CPU and `step_seconds` (`step_timer`) is given, the model's own
    training step decides: a small model's step is more than its matmuls (the 96-wide demo's
    products ran 1.5-1.7x faster in bf16 here, its whole step 0.8x, with autocast's casts), so bf16
    is taken only if that step is `STEP_MIN_SPEEDUP` x faster in it too."""
    if setting == "fp32":
        return torch.float32
    if setting == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    operands = {dtype: torch.randn(384, 384, device=device).to(dtype) for dtype in (torch.float32, torch.bfloat16)}
    candidates = [(torch.float32, kernel) for kernel in peak_kernels(device, torch.float32)] + [(torch.bfloat16, "aten")]

    def seconds(dtype: torch.dtype, kernel: str) -> float:
        x = operands[dtype]
        start = time.perf_counter()
        for _ in range(4):
            x @ x if kernel == "aten" else mm_nt(x, x, kernel)
        return time.perf_counter() - start

    # Best of several interleaved rounds: one round of each was swayed by whatever else the
    # machine was doing and picked fp32 on a CPU whose bf16 is twice as fast.
    best = best_of_rounds({candidate: functools.partial(seconds, *candidate) for candidate in candidates},
                          DTYPE_PROBE_ROUNDS)
    fastest_fp32 = min(t for (dtype, _), t in best.items() if dtype == torch.float32)
    if best[(torch.bfloat16, "aten")] >= 0.8 * fastest_fp32:
        return torch.float32
    if step_seconds is None:
        return torch.bfloat16
    # One round more than STEP_PROBE_ROUNDS: the first warms both up, and counts like the others.
    step_best = best_of_rounds({dtype: functools.partial(step_seconds, dtype)
                                for dtype in (torch.float32, torch.bfloat16)}, STEP_PROBE_ROUNDS + 1)
    return torch.bfloat16 if step_best[torch.bfloat16] * STEP_MIN_SPEEDUP < step_best[torch.float32] else torch.float32


def best_of_rounds(timers: dict[T, Callable[[], float]], rounds: int) -> dict[T, float]:
    """Each timer's fastest of `rounds` calls, the timers taking turns in every round, so that a busy
    moment of the machine falls on all of them rather than on one."""
    best = {key: float("inf") for key in timers}
    for _ in range(rounds):
        for key, timer in timers.items():
            best[key] = min(best[key], timer())
    return best


def step_timer(model: nn.Module, rows: int, context: int, vocab_size: int,
               device: torch.device) -> Callable[[torch.dtype], float]:
    """For `choose_dtype`: the seconds of one forward + backward of `model` (called as
    `model(ids, targets).loss`) on `rows` random windows, in a dtype's autocast. The gradients are
    dropped after each; the ids come from a generator of their own, so the run's random stream is
    untouched. Call it on the unwrapped model of a single process: each of several processes
    timing for itself could choose differently."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab_size, (rows, context), generator=generator).to(device)

    def seconds(dtype: torch.dtype) -> float:
        start = time.perf_counter()
        with autocast(dtype, device):
            loss = model(ids, ids).loss
        loss.backward()
        elapsed = time.perf_counter() - start
        model.zero_grad(set_to_none=True)
        return elapsed

    return seconds


def peak_matmul_size(device: torch.device) -> int:
    """The side n of the square matmul that MFU's peak is measured on: 1024 on CPUs, 8192 on GPUs."""
    return 8192 if device.type == "cuda" else 1024


def matmul_call_seconds(device: torch.device, dtype: torch.dtype = torch.float32, n: int | None = None,
                        min_seconds: float = 0.5, max_calls: int = 100, kernel: str = "aten") -> list[float]:
    """Durations of back-to-back (n x n) @ (n x n) matmul calls with `kernel` (`glassgpt.matmul`),
    after a warm-up, until they add up to `min_seconds` or `max_calls` calls (at least one); n
    defaults to `peak_matmul_size`."""
    n = n or peak_matmul_size(device)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)

    def one_call() -> float:
        start = time.perf_counter()
        if kernel == "aten":
            a @ b
        else:
            mm_nt(a, b, kernel)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for _ in range(3):  # warm up (thread pool, allocator, kernels, clock): one call was not enough
        one_call()
    durations: list[float] = []
    spent = 0.0
    while not durations or (spent < min_seconds and len(durations) < max_calls):
        durations.append(one_call())
        spent += durations[-1]
    return durations


def matmul_flops(device: torch.device, dtype: torch.dtype = torch.float32, n: int | None = None,
                 min_seconds: float = 0.5, max_calls: int = 100) -> float:
    """The best rate (FLOP/s) of an (n x n) @ (n x n) matmul on this device: the peak that model
    FLOP utilisation (MFU) is measured against (the fastest call of `matmul_call_seconds`, with
    each kernel that can multiply `dtype` here, `glassgpt.matmul.peak_kernels`: on a CPU whose
    BLAS leaves AVX-512 unused, oneDNN's float32 rate is the peak, whichever kernel trains)."""
    n = n or peak_matmul_size(device)
    kernels = peak_kernels(device, dtype)  # `min_seconds` in all, shared between them
    return max(2 * n**3 / min(matmul_call_seconds(device, dtype, n, min_seconds / len(kernels), max_calls, kernel))
               for kernel in kernels)


def autocast(dtype: torch.dtype, device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision for `dtype` (nothing to do for fp32)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def missing_cpu_compiler() -> str | None:
    """Why torch.compile cannot build CPU kernels here (it needs a C++ compiler), or None."""
    try:
        from torch._inductor import cpp_builder

        cpp_builder.get_cpp_compiler()
    except Exception as err:  # InvalidCxxCompiler, or an inductor without this function
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


def build_cpu_extension(name: str, source: Path, cflags: list[str], what: str) -> ModuleType | str:
    """The C++ extension `source`, compiled by PyTorch on first use (kept under `name` in its
    build folder) for a CPU with AVX2 or AVX-512, or one line saying why it cannot be had (no
    AVX2; no compiler, no ninja or a failed build: "`what` did not build (...)")."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        return f"this CPU has no AVX2 (PyTorch reports {capability})"
    try:
        from torch.utils.cpp_extension import load

        return load(name=name, sources=[str(source)], extra_cflags=cflags, verbose=False)
    except Exception as err:  # whatever the build raised: say which, never crash the caller
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return f"{what} did not build ({first_line[:200]})"


def maybe_compile(model: nn.Module, setting: str, device: torch.device, log: Log) -> nn.Module:
    """torch.compile for "on", and for "auto" on GPUs (on CPUs it pays off only in long runs, see
    README). On a CPU without a C++ compiler the model stays uncompiled, with a line saying why:
    compiling would otherwise fail at the first training step."""
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return model
    if device.type == "cpu" and (reason := missing_cpu_compiler()) is not None:
        log(f"torch.compile needs a C++ compiler on CPUs ({reason}); training uncompiled "
            "(install g++ or clang to compile)")
        return model
    try:
        return torch.compile(model)  # type: ignore[return-value]
    except Exception as err:  # compile is an optimisation: fall back rather than fail the run
        log(f"torch.compile unavailable ({err}); training uncompiled")
        return model


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Make this process's malloc keep freed memory for reuse; False where it is not glibc's.

    A training step frees and allocates the same large activations every step. glibc serves
    blocks over its mmap threshold (adapting up to 32 MB) with fresh pages from the OS and gives
    them back on free, so every step pays again for faulting in and zeroing them (35,000-149,000
    page faults a `small` step here). With mmap and trimming off, freed blocks stay in the heap
    for the next step: 1.07-1.21x the tokens/s of `small` and of the demo with PyTorch's own
    float32 matmuls, 1.31-1.43x with oneDNN's (faster matmuls, the same faults), measured by
    `benchmarks/bench_allocator.py`. The process keeps its peak memory until it exits, which
    training holds anyway.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):  # no mallopt (macOS), no C library handle (Windows)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Trimming off too: with mmap off, a large free at the top of the heap would shrink it.
    return bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1)) and bool(mallopt(M_MMAP_MAX, 0))


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and PyTorch's (CPU and GPU) random generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def main_process_log(distributed: Distributed, log: Log) -> Log:
    """`log` on rank 0, silence elsewhere: N processes must not print every line N times."""
    return log if distributed.is_main else (lambda _text: None)


# ----------------------------------------------------------------------------- process group


def init_process_group(distributed: Distributed, device: torch.device, timeout_s: float = 600.0) -> None:
    """Join the group torchrun set up: NCCL between GPUs, gloo between CPU processes."""
    if not distributed.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=distributed.rank, world_size=distributed.world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))


def destroy_process_group(finished: bool = False) -> None:
    """Leave torchrun's group (the counterpart of `init_process_group`).

    `finished`: every process completed the same work, so first free what training left behind
    and wait for the others. A sharded model outlives `pretrain` in reference cycles (FSDP's
    hooks; 3 modules and 90 tensors for the tiny preset), and without `gc.collect()` it is freed
    during interpreter shutdown, after the group is gone, the kind of teardown that aborted one
    two-process FSDP test run here at exit ("terminate called without an active exception").
    After an error no barrier: it could wait forever for a process that is gone.
    """
    if not dist.is_initialized():
        return
    if finished:
        gc.collect()
        dist.barrier()
    dist.destroy_process_group()


def barrier(distributed: Distributed) -> None:
    if distributed.enabled:
        dist.barrier()


def all_reduce(values: list[float], op: str, distributed: Distributed, device: torch.device) -> list[float]:
    """Combine a few numbers across processes: op 'mean', 'sum' or 'max'."""
    if not distributed.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    reduce_op = {"mean": dist.ReduceOp.SUM, "sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
    dist.all_reduce(tensor, op=reduce_op)
    if op == "mean":
        tensor /= distributed.world_size
    return tensor.tolist()


def broadcast_object(value: object, distributed: Distributed) -> object:
    """Rank 0's `value` on every process."""
    if not distributed.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ----------------------------------------------------------------------------- model wrapping


def wrap_model(model: nn.Module, distributed: Distributed, device: torch.device, fsdp: bool) -> nn.Module:
    """The module a training step calls: the model itself, under DDP, or sharded with FSDP2.

    DDP keeps a full copy per process and averages gradients; FSDP2 (`fully_shard`) gives each
    process a shard of every block's weights and optimizer state, for models too large for one
    GPU. With FSDP the model is sharded in place: use `full_state_dict` to save it.
    """
    if fsdp:
        if not distributed.enabled:
            raise GlassError("--fsdp shards a model across processes: start with torchrun --nproc_per_node N")
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:  # type: ignore[attr-defined]
            fully_shard(block)
        fully_shard(model)
        return model
    if not distributed.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP or compile wrapper (FSDP2 shards in place, nothing to unwrap)."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(unwrap(model), FSDPModule)


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on all but the last micro-step of an accumulated batch."""
    inner = unwrap(model)
    if enabled:
        yield
    elif hasattr(model, "no_sync"):  # DDP
        with model.no_sync():
            yield
    elif is_sharded(inner):  # FSDP2
        inner.set_requires_gradient_sync(False)  # type: ignore[attr-defined]
        try:
            yield
        finally:
            inner.set_requires_gradient_sync(True)  # type: ignore[attr-defined]
    else:
        yield


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every weight as a whole CPU tensor, whether the model is plain, under DDP or sharded.

    Sharded weights are gathered, which every process must call together.
    """
    inner = unwrap(model)
    if is_sharded(inner):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(inner, options=options)
    return {name: tensor.detach().cpu() for name, tensor in inner.state_dict().items()}


def full_optimizer_state(model: nn.Module,
                         optimizer: torch.optim.Optimizer | Iterable[torch.optim.Optimizer]) -> dict:
    """The optimizer's state with whole tensors, keyed by parameter name (not position).

    One form whether the model is plain, under DDP or sharded (shards are gathered, a
    collective), so a checkpoint resumes in any of them. Several optimizers (e.g. Muon for
    some matrices, AdamW for the rest) give one merged state: each parameter is in one of them.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=is_sharded(model))
    return get_optimizer_state_dict(unwrap(model), optimizer, options=options)


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer | Iterable[torch.optim.Optimizer],
                    weights: dict[str, torch.Tensor], optimizer_state: dict) -> None:
    """Put whole weights and optimizer state back into a plain, DDP or sharded model.

    The optimizer(s) get back their per-parameter state (moments, momentum buffers, steps);
    their hyperparameters (peak learning rates, weight decay, betas) stay as built, from the
    config being resumed, which may differ from the saved one (e.g. `--resume --lr`).
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    inner = unwrap(model)
    expected = set(inner.state_dict())
    if getattr(getattr(inner, "config", None), "tie_embeddings", False):
        expected.discard("lm_head.weight")  # saved once, as embed.weight
    if set(weights) - {"lm_head.weight"} != expected:
        missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise ValueError(f"saved weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    options = StateDictOptions(full_state_dict=True, strict=False)  # the tied output layer is not in `weights`
    set_model_state_dict(inner, weights, options=options)
    optimizers = [optimizer] if isinstance(optimizer, torch.optim.Optimizer) else list(optimizer)
    built = [{k: v for k, v in group.items() if k != "params"} for opt in optimizers for group in opt.param_groups]
    if all(isinstance(key, int) for key in optimizer_state["state"]):
        if len(optimizers) != 1:
            raise ValueError("the saved optimizer state is for one optimizer (saved by position), not several")
        optimizers[0].load_state_dict(optimizer_state)  # saved by glassgpt before states were keyed by name
    else:
        set_optimizer_state_dict(inner, optimizers, optimizer_state, options=options)
    for group, hyper in zip((g for opt in optimizers for g in opt.param_groups), built, strict=True):
        group.update(hyper)
