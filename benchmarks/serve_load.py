"""Load on `glassgpt serve`: many concurrent streaming clients on loopback, measured from outside.

Starts `glassgpt serve` as its own process (as a user would), waits for its startup line, warms
it with one request, then runs `--clients` concurrent clients (the official `openai` async
client, streaming `/v1/completions`), each sending `--requests` requests one after another.
Every request asks for exactly `--max-tokens` new tokens (`ignore_eos`), so tokens/s compares
like with like. Bounded: each request has a timeout and the whole run `--time-limit`; whatever
has not finished by then counts as an error.

Reported: requests done and failed, time to first token (first streamed text) p50/p95, whole
request latency p50/p95, aggregate tokens/s (all new tokens / wall time of the load phase),
per-request decode tokens/s (median), and the server's resident memory (Linux /proc: VmRSS
before and after the load, VmHWM = its peak). The server runs one generation at a time from a
bounded queue, so time to first token grows with the number of clients waiting; `--max-queue`
is set to the number of clients so that none is refused.

    python benchmarks/serve_load.py --model runs/demo                 # 50 clients x 2 requests
    python benchmarks/serve_load.py --model runs/demo --clients 3 --requests 1 --max-tokens 4  # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "It is a truth universally acknowledged, that"


@dataclass
class RequestResult:
    ok: bool
    ttft_s: float | None = None  # time to the first streamed text
    latency_s: float | None = None
    tokens: int = 0
    error: str | None = None


@dataclass
class Report:
    clients: int
    requests_per_client: int
    max_tokens: int
    done: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    tokens_total: int = 0
    tokens_per_s: float = 0.0  # aggregate: every new token over the load phase's wall time
    decode_tokens_per_s_median: float | None = None  # one request: tokens after the first / its streaming time
    rss_before_mb: float | None = None
    rss_after_mb: float | None = None
    rss_peak_mb: float | None = None
    server: str = ""


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process in MB (empty where /proc is missing)."""
    status = Path(f"/proc/{pid}/status")
    if not status.is_file():
        return {}
    found = {}
    for line in status.read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


def start_server(model: str, clients: int, max_tokens: int, timeout_s: float) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "glassgpt", "serve", "--model", model, "--port", "0",
               "--max-queue", str(max(1, clients)), "--max-tokens", str(max(max_tokens, 1))]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        if url := re.search(r"http://[^\s]+/", line):
            return process, url.group(0)
    process.kill()
    raise SystemExit(f"the server did not start within {timeout_s:.0f} s: {line.strip() if line else 'no output'}")


async def one_request(client: openai.AsyncOpenAI, model: str, max_tokens: int) -> RequestResult:
    start = time.perf_counter()
    first = None
    tokens = 0
    try:
        stream = await client.completions.create(model=model, prompt=PROMPT, max_tokens=max_tokens, temperature=0.8,
                                                 stream=True, stream_options={"include_usage": True},
                                                 extra_body={"ignore_eos": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].text and first is None:
                first = time.perf_counter() - start
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
    except Exception as err:  # counted and reported, the load goes on
        return RequestResult(False, error=f"{type(err).__name__}: {err}"[:200])
    return RequestResult(True, first, time.perf_counter() - start, tokens)


async def load(url: str, model: str, clients: int, requests: int, max_tokens: int,
               request_timeout: float, time_limit: float) -> tuple[list[RequestResult], float]:
    client = openai.AsyncOpenAI(base_url=url + "v1", api_key="none", max_retries=0, timeout=request_timeout)
    results: list[RequestResult] = []

    async def run_client() -> None:
        for _ in range(requests):
            results.append(await one_request(client, model, max_tokens))

    await one_request(client, model, min(4, max_tokens))  # warm-up, not counted
    start = time.perf_counter()
    tasks = [asyncio.create_task(run_client()) for _ in range(clients)]
    done, pending = await asyncio.wait(tasks, timeout=time_limit)
    for task in pending:
        task.cancel()
    wall = time.perf_counter() - start
    missing = clients * requests - len(results)
    results += [RequestResult(False, error=f"not finished within --time-limit {time_limit:g} s")] * missing
    await client.close()
    return results, wall


def summarise(results: list[RequestResult], wall: float, report: Report) -> Report:
    good = [r for r in results if r.ok]
    report.done, report.failed = len(good), len(results) - len(good)
    report.errors = sorted({r.error for r in results if r.error})[:5]
    report.wall_s = wall
    ttfts = [r.ttft_s for r in good if r.ttft_s is not None]
    latencies = [r.latency_s for r in good if r.latency_s is not None]
    report.ttft_p50_s, report.ttft_p95_s = percentile(ttfts, 50), percentile(ttfts, 95)
    report.latency_p50_s, report.latency_p95_s = percentile(latencies, 50), percentile(latencies, 95)
    report.tokens_total = sum(r.tokens for r in good)
    report.tokens_per_s = report.tokens_total / wall if wall > 0 else 0.0
    decode = [(r.tokens - 1) / (r.latency_s - r.ttft_s) for r in good
              if r.ttft_s is not None and r.latency_s and r.latency_s > r.ttft_s and r.tokens > 1]
    report.decode_tokens_per_s_median = statistics.median(decode) if decode else None
    return report


def table(report: Report) -> str:
    def s(value: float | None, unit: str = " s") -> str:
        return "-" if value is None else f"{value:.3f}{unit}"

    rows = [
        ("clients x requests", f"{report.clients} x {report.requests_per_client}, {report.max_tokens} tokens each"),
        ("done / failed", f"{report.done} / {report.failed}"),
        ("time to first token p50 / p95", f"{s(report.ttft_p50_s)} / {s(report.ttft_p95_s)}"),
        ("request latency p50 / p95", f"{s(report.latency_p50_s)} / {s(report.latency_p95_s)}"),
        ("aggregate tokens/s", f"{report.tokens_per_s:,.1f} ({report.tokens_total:,} tokens in {report.wall_s:.1f} s)"),
        ("one request's decode tokens/s (median)", s(report.decode_tokens_per_s_median, "")),
        ("server memory before / after / peak",
         f"{s(report.rss_before_mb, ' MB')} / {s(report.rss_after_mb, ' MB')} / {s(report.rss_peak_mb, ' MB')}"),
    ]
    return "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="run folder to serve")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2, help="requests per client, one after another")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--request-timeout", type=float, default=300.0)
    parser.add_argument("--time-limit", type=float, default=600.0, help="bound on the whole load phase (s)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if min(args.clients, args.requests, args.max_tokens) < 1:
        parser.error("--clients, --requests and --max-tokens must be at least 1")

    process, url = start_server(args.model, args.clients, args.max_tokens, timeout_s=120)
    report = Report(args.clients, args.requests, args.max_tokens, server=url)
    try:
        before = memory_mb(process.pid)
        results, wall = asyncio.run(load(url, Path(args.model).name, args.clients, args.requests, args.max_tokens,
                                         args.request_timeout, args.time_limit))
        after = memory_mb(process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    summarise(results, wall, report)
    report.rss_before_mb, report.rss_after_mb = before.get("VmRSS"), after.get("VmRSS")
    report.rss_peak_mb = after.get("VmHWM")
    print(table(report))
    for error in report.errors:
        print(f"error: {error}")
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return 0 if report.failed == 0 and report.done > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
