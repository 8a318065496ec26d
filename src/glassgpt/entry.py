"""The `glassgpt` process's first steps, before anything imports torch: the cache folder, and
letting MKL run its fast code on AMD CPUs (`glassgpt.mkl_on_amd`), which works only if it happens
before torch is loaded. Then the CLI (`glassgpt.cli.main`) runs.

This is the console script's entry point and `python -m glassgpt`'s; like the CLI, and unlike the
library, it reads the environment: $GLASSGPT_CACHE / $XDG_CACHE_HOME for the cache, and
$GLASSGPT_MKL_FAST_CODE=0 to leave MKL as it is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: The environment variable that turns `use_mkl_fast_code` off ("0").
MKL_SWITCH = "GLASSGPT_MKL_FAST_CODE"


def cache_root(env: Mapping[str, str]) -> Path:
    """glassgpt's cache folder: $GLASSGPT_CACHE, else $XDG_CACHE_HOME/glassgpt, else ~/.cache/glassgpt."""
    root = env.get("GLASSGPT_CACHE") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                                     "glassgpt")
    return Path(root)


def prepare_process(env: Mapping[str, str]) -> str | None:
    """What must happen before torch is imported: MKL's fast code on AMD CPUs, unless
    $GLASSGPT_MKL_FAST_CODE is "0". Returns None when it is on, else why not (`use_mkl_fast_code`).
    Benchmarks call it too, first, so that they time what the command runs."""
    from glassgpt.mkl_on_amd import use_mkl_fast_code

    switched_off = f"{MKL_SWITCH}=0" if env.get(MKL_SWITCH, "1") == "0" else None
    return use_mkl_fast_code(cache_root(env) / "mkl", turned_off_by=switched_off)


def run(argv: list[str] | None = None) -> int:
    """Set up the process, then run the CLI."""
    prepare_process(os.environ)  # where it cannot help, the training log says which code MKL runs
    from glassgpt.cli import main

    return main(argv)
