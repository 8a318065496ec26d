"""Intel's MKL inside PyTorch's CPU wheel, running its fast code on AMD CPUs too.

PyTorch's CPU wheel carries Intel oneMKL (linked into libtorch_cpu.so) for float32 matmuls:
`torch.mm`, `bmm`, the products inside SDPA's flash attention and Muon's Newton-Schulz steps.
MKL picks its code by CPU vendor as well as by instruction set: on a CPU that is not Intel's it
runs an AVX2-class path whatever the CPU has. Which vendor it sees, it asks functions of its
own (`mkl_serv_intel_cpu_true`, `mkl_serv_intel_cpu`), and libtorch_cpu.so looks those symbols up
through the process's global scope. So a two-line library that defines them (`SHIM_SOURCE`),
loaded into that scope before torch, answers instead, and MKL picks its code by the instructions
the CPU has, as it does on Intel's: AVX-512 where the CPU has it, AVX2 where it has only that
(MKL still reads the CPU's instruction sets itself; only the vendor's name is answered for it).

On the 2-core AMD EPYC (Zen 5, AVX-512) glassgpt is measured on, a 1024^3 float32 matmul ran at
174-182 GFLOP/s through `torch.mm` without it and 393-453 with it, and `glassgpt train --preset
small --dtype fp32` 1.25x as many tokens a second (README, "Training on this CPU").

It must happen before `import torch`: once torch is loaded, MKL answers from its own copy. So only
the CLI's entry point (`glassgpt.entry.run`) calls `use_mkl_fast_code`, before anything else is
imported; a library user who wants it calls it first too. This module never imports torch at
import time; `mkl_code_path` (what MKL chose, for the training log) imports it when called.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from glassgpt.atomic import atomic_path

#: The whole library: MKL's vendor question, answered "Intel" (1). The first function is the one
#: MKL's code dispatch asks (alone it made the matmuls fast); the second is the one its reports
#: ask (`mkl_code_path`, MKL_VERBOSE), so that they name the code that runs.
SHIM_SOURCE = ("int mkl_serv_intel_cpu_true(void) { return 1; }\n"
               "int mkl_serv_intel_cpu(void) { return 1; }\n")

#: The vendor whose CPUs MKL otherwise holds back (as /proc/cpuinfo's `vendor_id` names it).
AMD_VENDOR = "AuthenticAMD"


def cpu_vendor(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's `vendor_id` ("AuthenticAMD", "GenuineIntel"), or None where it cannot be read."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "vendor_id":
            return value.strip()
    return None


def shim_path(cache_dir: Path) -> Path:
    """Where the built library lives: named by its source's hash, so a changed source rebuilds."""
    digest = hashlib.sha256(SHIM_SOURCE.encode()).hexdigest()[:12]
    return cache_dir / f"mkl_intel_cpu_true-{digest}.so"


def c_compiler() -> str | None:
    """The system's C compiler (cc, else gcc), or None."""
    return shutil.which("cc") or shutil.which("gcc")


def build_shim(cache_dir: Path) -> Path | str:
    """The shim library, built with the system's C compiler on first use (~0.1 s) and kept in
    `cache_dir`; or a one-line reason it could not be built."""
    target = shim_path(cache_dir)
    if target.exists():
        return target
    compiler = c_compiler()
    if compiler is None:
        return "no C compiler (cc or gcc) to build its two-line library"
    source = cache_dir / f"{target.stem}.c"
    try:
        with atomic_path(source) as tmp:
            tmp.write_text(SHIM_SOURCE)
        with atomic_path(target) as tmp:
            result = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(tmp), str(source)],
                                    capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise OSError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed")
    except OSError as error:
        return f"could not build its library in {cache_dir} ({error})"
    return target


#: Why MKL was not let run its fast code in this process (None once it was), for the training
#: log; `use_mkl_fast_code` sets it. Until that runs, this says so.
_why_not: str | None = "glassgpt.entry.prepare_process did not run before torch was imported"


def use_mkl_fast_code(cache_dir: Path, cpuinfo: Path = Path("/proc/cpuinfo"),
                      turned_off_by: str | None = None) -> str | None:
    """Make MKL pick its code by the CPU's instruction sets on an AMD CPU; call before `import torch`.

    Returns None when the library is loaded, else a one-line reason why not (turned off by
    `turned_off_by`, e.g. the CLI's environment switch; not Linux on x86-64, not an AMD CPU, torch
    already imported, no C compiler): then MKL runs as it would anyway. `why_not_fast_code`
    gives the same answer later."""
    global _why_not
    _why_not = f"turned off by {turned_off_by}" if turned_off_by else _load_shim(cache_dir, cpuinfo)
    return _why_not


def why_not_fast_code() -> str | None:
    """What `use_mkl_fast_code` answered in this process (None: the library is loaded)."""
    return _why_not


def _load_shim(cache_dir: Path, cpuinfo: Path) -> str | None:
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"only for Linux on x86-64 (this is {platform.system()} on {platform.machine()})"
    vendor = cpu_vendor(cpuinfo)
    if vendor != AMD_VENDOR:
        return f"not an AMD CPU ({vendor or 'vendor unknown'}): MKL already picks its code by instruction set"
    if "torch" in sys.modules:
        return "torch was imported first, and MKL has answered already"
    shim = build_shim(cache_dir)
    if isinstance(shim, str):
        return shim
    try:
        ctypes.CDLL(str(shim), mode=os.RTLD_GLOBAL)
    except OSError as error:
        return f"could not load {shim} ({error})"
    return None


def mkl_code_path() -> str | None:
    """Which code MKL runs in this process, as MKL itself names it ("Intel(R) Advanced Vector
    Extensions 512 ...", or "Intel(R) Architecture processors" for its generic path); None where
    this PyTorch carries no MKL that can be asked (other platforms, other BLAS)."""
    import torch

    if not torch.backends.mkl.is_available() or platform.system() != "Linux":
        return None

    class _MklVersion(ctypes.Structure):  # MKL's MKLVersion struct (mkl_types.h)
        _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("update", ctypes.c_int),
                    ("product_status", ctypes.c_char_p), ("build", ctypes.c_char_p),
                    ("processor", ctypes.c_char_p), ("platform", ctypes.c_char_p)]

    try:
        library = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        version = _MklVersion()
        library.mkl_serv_get_version(ctypes.byref(version))
    except (OSError, AttributeError):
        return None
    return version.processor.decode(errors="replace") if version.processor else None


def mkl_code_name() -> str | None:
    """`mkl_code_path` in a word: "AVX-512", "AVX2" or "generic" (None where MKL cannot be asked)."""
    path = mkl_code_path()
    if path is None:
        return None
    if "AVX-512" in path or "Extensions 512" in path:
        return "AVX-512"
    if "AVX2" in path or "Extensions 2" in path:
        return "AVX2"
    return "generic"
