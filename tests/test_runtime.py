"""The run-time choices of `glassgpt.runtime`: which dtype a run computes in, whether it
compiles, and whether malloc keeps freed memory."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from glassgpt import runtime


def test_explicit_dtypes_are_kept():
    cpu = torch.device("cpu")
    assert runtime.choose_dtype("fp32", cpu) is torch.float32
    assert runtime.choose_dtype("bf16", cpu) is torch.bfloat16


@pytest.mark.parametrize("bf16_speedup, expected", [(2.0, torch.bfloat16), (1.1, torch.float32)])
def test_auto_takes_bf16_only_when_its_best_time_is_clearly_faster(monkeypatch: pytest.MonkeyPatch,
                                                                     bf16_speedup: float, expected: torch.dtype):
    # A fake clock: each timed block of fp32 takes 1 s, of bf16 1/speedup s, except that the first
    # round of bf16 is slow (a busy moment); the best of the rounds must decide, not the first.
    monkeypatch.setattr(runtime, "peak_kernels", lambda device, dtype: ("aten",))
    fake_timings(monkeypatch, [1.0, 5.0] + [1.0, 1.0 / bf16_speedup] * (runtime.DTYPE_PROBE_ROUNDS - 1))
    assert runtime.choose_dtype("auto", torch.device("cpu")) is expected


def fake_timings(monkeypatch: pytest.MonkeyPatch, durations: list[float]) -> None:
    """A fake clock under which the timed blocks take `durations` seconds, in turn."""
    remaining = iter(durations)
    now = [0.0]
    pending: list[float] = []

    def fake_clock() -> float:
        if pending:  # the end of a timed block
            now[0] += pending.pop()
        else:  # the start of one
            pending.append(next(remaining))
        return now[0]

    monkeypatch.setattr(runtime.time, "perf_counter", fake_clock)


@pytest.mark.parametrize("step_times, expected", [({torch.float32: 1.0, torch.bfloat16: 1.25}, torch.float32),
                                                   ({torch.float32: 1.0, torch.bfloat16: 0.95}, torch.float32),
                                                   ({torch.float32: 1.0, torch.bfloat16: 0.7}, torch.bfloat16)])
def test_auto_lets_the_models_own_step_overrule_a_faster_bf16_matmul(monkeypatch: pytest.MonkeyPatch,
                                                                     step_times: dict, expected: torch.dtype):
    """The matmul probe favours bf16 (2x); the model's step then decides, taking bf16 only when it
    is clearly faster (a small model's step ran slower in bf16 on a CPU whose matmuls ran faster)."""
    monkeypatch.setattr(runtime, "peak_kernels", lambda device, dtype: ("aten",))
    fake_timings(monkeypatch, [1.0, 0.5] * runtime.DTYPE_PROBE_ROUNDS)
    timed = []

    def step_seconds(dtype: torch.dtype) -> float:
        timed.append(dtype)
        return step_times[dtype] * (3.0 if len(timed) <= 2 else 1.0)  # the warm-up round is slow

    assert runtime.choose_dtype("auto", torch.device("cpu"), step_seconds) is expected
    assert timed.count(torch.float32) == timed.count(torch.bfloat16) == runtime.STEP_PROBE_ROUNDS + 1


def test_step_timer_leaves_no_gradients_and_the_random_stream_as_it_was():
    from glassgpt.config import PRESETS
    from glassgpt.model import GPT

    config = PRESETS["tiny"].model
    model = GPT(config)
    state = torch.get_rng_state()
    seconds = runtime.step_timer(model, 2, config.context_length, config.vocab_size, torch.device("cpu"))
    assert seconds(torch.float32) > 0 and seconds(torch.bfloat16) > 0
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("bf16_seconds, expected", [(0.45, torch.float32), (0.2, torch.bfloat16)])
def test_auto_weighs_bf16_against_the_fastest_float32_kernel(monkeypatch: pytest.MonkeyPatch, bf16_seconds: float,
                                                             expected: torch.dtype):
    """Where oneDNN multiplies float32 twice as fast as PyTorch's own kernel (as training will, with
    --matmul auto), bf16 must beat oneDNN's time, not the slower kernel's."""
    monkeypatch.setattr(runtime, "peak_kernels", lambda device, dtype: ("aten", "onednn"))
    kernels_timed = []
    monkeypatch.setattr(runtime, "mm_nt", lambda a, b, kernel: kernels_timed.append(kernel) or a @ b.t())
    # Each round times fp32 on PyTorch's kernel (1 s), on oneDNN (0.5 s), then bf16.
    fake_timings(monkeypatch, [1.0, 0.5, bf16_seconds] * runtime.DTYPE_PROBE_ROUNDS)
    assert runtime.choose_dtype("auto", torch.device("cpu")) is expected
    assert set(kernels_timed) == {"onednn"}


def test_compile_on_a_cpu_without_a_cpp_compiler_trains_uncompiled():
    import torch._inductor.config as inductor_config

    from glassgpt.config import PRESETS
    from glassgpt.model import GPT

    model = GPT(PRESETS["tiny"].model)
    cpu, lines = torch.device("cpu"), []
    assert runtime.missing_cpu_compiler() is None  # CI installs g++: torch.compile works here
    assert runtime.maybe_compile(model, "on", cpu, lines.append) is not model
    assert runtime.maybe_compile(model, "auto", cpu, lines.append) is model and not lines  # auto: GPUs only
    # Inductor's own patching: monkeypatch's undo left the option "does not exist" for every later
    # torch.compile in the process (a test of compiled training that ran after this one failed).
    with inductor_config.patch({"cpp.cxx": ("/nonexistent/c++",)}):
        assert "No working C++ compiler" in runtime.missing_cpu_compiler()
        # Without the check, the first forward of the compiled model raises InvalidCxxCompiler.
        assert runtime.maybe_compile(model, "on", cpu, lines.append) is model
    assert len(lines) == 1 and "needs a C++ compiler" in lines[0] and "training uncompiled" in lines[0]


FAULTS_A_STEP = """
import resource, torch
from glassgpt.runtime import keep_freed_memory
if {keep}:
    assert keep_freed_memory()
x, w = torch.randn(4096, 64), torch.randn(64, 2304, requires_grad=True)  # x @ w: 36 MB, over glibc's mmap threshold
def step():
    y = torch.nn.functional.silu(x @ w)
    (y * y).mean().backward()
    w.grad = None
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 4)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_keeping_freed_memory_stops_the_page_faults_of_each_step():
    faults = {keep: int(subprocess.run([sys.executable, "-c", FAULTS_A_STEP.format(keep=keep)],
                                       capture_output=True, text=True, check=True).stdout)
              for keep in (False, True)}
    # Each step's 36 MB blocks (the product, silu, square and their gradients; 9,216 pages each)
    # fault in again, at least four of them...
    assert faults[False] > 4 * 36 * 2**20 // 4096, faults
    assert faults[True] < faults[False] / 4, faults  # ...unless malloc keeps them
