"""The process's first steps: the cache folder from the environment, and the MKL switch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from glassgpt.entry import MKL_SWITCH, cache_root
from glassgpt.mkl_on_amd import AMD_VENDOR, c_compiler, cpu_vendor, shim_path


def test_cache_root_follows_the_environment(tmp_path: Path) -> None:
    assert cache_root({"GLASSGPT_CACHE": str(tmp_path / "g"), "XDG_CACHE_HOME": "/x"}) == tmp_path / "g"
    assert cache_root({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "glassgpt"
    assert cache_root({}) == Path(os.path.expanduser("~/.cache")) / "glassgpt"


@pytest.mark.skipif(cpu_vendor() != AMD_VENDOR or c_compiler() is None,
                    reason="the command loads MKL's shim only on AMD CPUs, built with a C compiler")
def test_command_builds_the_shim_unless_switched_off(tmp_path: Path) -> None:
    def version(cache: Path, **extra: str) -> None:
        env = {**os.environ, "GLASSGPT_CACHE": str(cache), **extra}
        subprocess.run([sys.executable, "-m", "glassgpt", "--version"], env=env, check=True, capture_output=True)

    version(tmp_path / "on")
    assert shim_path(tmp_path / "on" / "mkl").is_file()
    version(tmp_path / "off", **{MKL_SWITCH: "0"})
    assert not (tmp_path / "off").exists()
