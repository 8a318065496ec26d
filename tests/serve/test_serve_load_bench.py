"""The load benchmark runs end to end on a few clients and reports real numbers (slow: it starts a server)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_serve_load_benchmark_smoke(tiny_run: Path, tmp_path: Path):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    main = importlib.import_module("benchmarks.serve_load").main
    out = tmp_path / "load.json"
    assert main(["--model", str(tiny_run), "--clients", "3", "--requests", "2", "--max-tokens", "5",
                 "--time-limit", "240", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["done"] == 6 and report["failed"] == 0
    assert report["tokens_total"] == 6 * 5  # ignore_eos: exactly max_tokens each
    assert 0 < report["ttft_p50_s"] <= report["ttft_p95_s"] <= report["latency_p95_s"]
    assert report["tokens_per_s"] > 0
    if Path("/proc/self/status").is_file():
        assert report["rss_before_mb"] > 0 and report["rss_peak_mb"] >= report["rss_after_mb"] > 0
