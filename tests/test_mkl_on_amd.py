"""MKL's fast code on AMD CPUs: the shim builds and answers, the guards say why they hold back, and
in a fresh process (the only place it can work: before torch) MKL runs its instruction-set code
with float32 products and attention that match references."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from glassgpt import matmul, mkl_on_amd
from glassgpt.mkl_on_amd import (
    AMD_VENDOR,
    build_shim,
    c_compiler,
    cpu_vendor,
    mkl_code_name,
    shim_path,
    use_mkl_fast_code,
    why_not_fast_code,
)

LINUX_X86 = platform.system() == "Linux" and platform.machine() == "x86_64"
needs_linux_x86_compiler = pytest.mark.skipif(not LINUX_X86 or c_compiler() is None,
                                              reason="the shim is for Linux on x86-64, built with a C compiler")


@pytest.fixture(autouse=True)
def keep_the_process_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """`use_mkl_fast_code` records its answer for the process: the tests here put it back after."""
    monkeypatch.setattr(mkl_on_amd, "_why_not", mkl_on_amd._why_not)


def fake_cpuinfo(tmp_path: Path, vendor: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: 26\nflags\t\t: fpu avx2\n\n"
                    f"processor\t: 1\nvendor_id\t: {vendor}\n")
    return path


def test_cpu_vendor_reads_vendor_id(tmp_path: Path) -> None:
    assert cpu_vendor(fake_cpuinfo(tmp_path, "AuthenticAMD")) == "AuthenticAMD"
    assert cpu_vendor(fake_cpuinfo(tmp_path, "GenuineIntel")) == "GenuineIntel"
    (tmp_path / "empty").write_text("processor : 0\n")
    assert cpu_vendor(tmp_path / "empty") is None
    assert cpu_vendor(tmp_path / "missing") is None


@pytest.mark.skipif(not LINUX_X86, reason="the guards below the platform check need Linux on x86-64")
def test_holds_back_where_it_cannot_or_need_not_help(tmp_path: Path) -> None:
    reason = use_mkl_fast_code(tmp_path / "cache", fake_cpuinfo(tmp_path, "GenuineIntel"))
    assert reason is not None and "not an AMD CPU (GenuineIntel)" in reason
    assert "torch" in sys.modules  # the test process has imported it, as a late caller would have
    reason = use_mkl_fast_code(tmp_path / "cache", fake_cpuinfo(tmp_path, AMD_VENDOR))
    assert reason is not None and "torch was imported first" in reason
    assert not (tmp_path / "cache").exists()  # nothing built for a call that cannot take effect
    assert why_not_fast_code() == reason  # kept for the training log


def test_training_log_names_why_mkl_runs_its_generic_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reason = use_mkl_fast_code(tmp_path / "cache", fake_cpuinfo(tmp_path, AMD_VENDOR), turned_off_by="THE_SWITCH=0")
    assert reason == "turned off by THE_SWITCH=0" and why_not_fast_code() == reason
    assert not (tmp_path / "cache").exists()
    monkeypatch.setattr(matmul, "mkl_code_name", lambda: "generic")
    assert matmul._mkl_note() == "; MKL runs its generic code (turned off by THE_SWITCH=0)"
    monkeypatch.setattr(matmul, "mkl_code_name", lambda: "AVX-512")  # fast code: no reason to give
    assert matmul._mkl_note() == "; MKL runs its AVX-512 code"
    monkeypatch.setattr(matmul, "mkl_code_name", lambda: None)  # no MKL to ask
    assert matmul._mkl_note() == ""


@needs_linux_x86_compiler
def test_shim_builds_once_and_answers_intel(tmp_path: Path) -> None:
    built = build_shim(tmp_path)
    assert built == shim_path(tmp_path) and built.is_file()
    mtime = built.stat().st_mtime_ns
    assert build_shim(tmp_path) == built and built.stat().st_mtime_ns == mtime  # kept, not rebuilt
    library = ctypes.CDLL(str(built))
    assert library.mkl_serv_intel_cpu_true() == 1 and library.mkl_serv_intel_cpu() == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic writes left nothing behind


def test_build_without_compiler_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("glassgpt.mkl_on_amd.c_compiler", lambda: None)
    assert build_shim(tmp_path) == "no C compiler (cc or gcc) to build its two-line library"


# A fresh interpreter: the shim first (told the CPU is AMD's, so that the path runs on any x86-64
# CPU), then torch; it reports MKL's code and checks float32 products and attention on it.
FRESH_PROCESS = r"""
import json, sys
from pathlib import Path
from glassgpt.mkl_on_amd import use_mkl_fast_code, mkl_code_name
reason = use_mkl_fast_code(Path(sys.argv[1]), Path(sys.argv[2]))
import torch
import torch.nn.functional as F
torch.manual_seed(0)
a, b = torch.randn(300, 200), torch.randn(200, 500)
mm_error = ((a @ b).double() - a.double() @ b.double()).abs().max().item()
q, k, v = (torch.randn(2, 3, 64, 32, requires_grad=True) for _ in range(3))
out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
out.square().sum().backward()
grads = [t.grad.clone() for t in (q, k, v)]
q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
mask = torch.ones(64, 64, dtype=torch.bool).tril()
weights = ((q64 @ k64.transpose(-1, -2)) / 32 ** 0.5).masked_fill(~mask, float("-inf")).softmax(-1)
ref = weights @ v64
ref.square().sum().backward()
attention_error = max([(out.double() - ref).abs().max().item()]
                      + [(g.double() - t.grad).abs().max().item() for g, t in zip(grads, (q64, k64, v64))])
print(json.dumps({"reason": reason, "code": mkl_code_name(), "mm_error": mm_error,
                  "attention_error": attention_error}))
"""


@needs_linux_x86_compiler
def test_fresh_process_runs_mkl_instruction_set_code_with_correct_results(tmp_path: Path) -> None:
    import torch

    if not torch.backends.mkl.is_available():
        pytest.skip("this PyTorch carries no MKL")
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "cache"),
                             str(fake_cpuinfo(tmp_path, AMD_VENDOR))],
                            capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["reason"] is None  # loaded
    assert report["code"] in ("AVX-512", "AVX2")  # not MKL's generic path (every x86-64 CPU torch runs on has AVX2)
    assert report["mm_error"] < 1e-3  # float32 rounding of 200-term sums, not a wrong kernel
    assert report["attention_error"] < 1e-4
    assert mkl_code_name() is not None  # this process (torch imported before any shim) can still ask
