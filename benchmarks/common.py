"""Shared pieces of the benchmarks: interleaved timing, the machine's measured peaks, tables.

Every benchmark compares two implementations ("ours" and "theirs") of the same work. On a
shared machine the speed drifts while a benchmark runs, so the two are run in alternation
(`interleaved`): repeat 1 runs ours then theirs, repeat 2 theirs then ours, and so on; the
reported number is the median over repeats, and the ratio compares medians.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection

import torch

from glassgpt.config import MATMUL_SETTINGS, PRESETS, preset
from glassgpt.errors import GlassError
from glassgpt.matmul import choose_matmul_kernel
from glassgpt.runtime import matmul_flops


@dataclass
class Rate:
    """A throughput measured in several repeats (units per second), summarised by the median."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else 0.0

    @property
    def spread(self) -> float:
        """(max - min) / median over the repeats: how noisy the measurement was."""
        if len(self.samples) < 2 or self.median == 0:
            return 0.0
        return (max(self.samples) - min(self.samples)) / self.median

    def to_dict(self) -> dict[str, float | list[float]]:
        return {"median": self.median, "spread": self.spread, "samples": self.samples}


def interleaved(runners: dict[str, Callable[[], float]], repeats: int) -> dict[str, Rate]:
    """Call every runner (each returns one rate) `repeats` times, alternating their order."""
    names = list(runners)
    rates = {name: Rate() for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            rates[name].samples.append(runners[name]())
    return rates


def start_workers(prog: str, workers: dict[str, tuple[Callable[..., None], tuple]]) -> dict[str, Connection]:
    """Start each worker, `target(*args, conn)`, in a fresh (spawned) process, and wait until each
    sends ("ready", None); the returned connections then carry the benchmark's turns, and
    `stop_workers` ends them. For what one process cannot undo (its malloc settings, what
    `torch.compile` traced). A worker that sends ("error", message), or dies, stops the
    benchmark with a one-line message."""
    context = mp.get_context("spawn")
    conns = {}
    for label, (target, args) in workers.items():
        ours, theirs = context.Pipe()
        context.Process(target=target, args=(*args, theirs), daemon=True).start()
        theirs.close()  # the child's end now lives in the child only: its exit ends `recv` with EOFError
        try:
            kind, message = ours.recv()
        except EOFError:
            kind, message = "error", f"the {label} worker failed (its error is above)"
        if kind == "error":
            raise SystemExit(f"{prog}: {message}")
        conns[label] = ours
    return conns


def serve_answers(conn: Connection, answers: dict[str, Callable[[], object]]) -> None:
    """A `start_workers` worker's loop once it is set up: say it is ready, then answer each request
    (a key of `answers`) with its function's result, until the parent sends None."""
    conn.send(("ready", None))
    while (request := conn.recv()) is not None:
        conn.send(("answer", answers[request]()))


def ask(conn: Connection, request: str) -> object:
    """One request to a worker in `serve_answers`, and its answer."""
    conn.send(request)
    return conn.recv()[1]


def interleaved_answers(conns: dict[str, Connection], request: str, repeats: int) -> dict[str, Rate]:
    """`interleaved` over workers: each worker's answers to `request` (a rate), taking turns."""
    return interleaved({label: functools.partial(ask, conn, request) for label, conn in conns.items()}, repeats)


def stop_workers(conns: dict[str, Connection]) -> None:
    """Tell each worker of `start_workers` to exit (None)."""
    for conn in conns.values():
        conn.send(None)


def seconds(fn: Callable[[], object]) -> float:
    """Wall time of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ratio(ours: float, theirs: float) -> float | None:
    return ours / theirs if ours > 0 and theirs > 0 else None


# ----------------------------------------------------------------------------- the machine


@dataclass(frozen=True)
class MachineInfo:
    """What the numbers were measured on, and the peaks they are compared with."""

    cpu: str
    cores: int
    torch_threads: int
    torch_version: str
    transformers_version: str
    load_average: tuple[float, float, float]
    fp32_gflops: float  # best square fp32 matmul rate seen
    fp32_size: int  # the matrix size it was seen at
    bf16_gflops: float
    bf16_size: int
    bf16_fast: bool  # False: bf16 matmuls are emulated (much slower than fp32) on this CPU
    bandwidth_gbs: float  # memory copy bandwidth (bytes read + written per second)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def cpu_name() -> str:
    """The CPU's model name and the vector instructions PyTorch uses on it, e.g. "AMD EPYC (AVX512)".

    Virtual machines often report only a family name, and machines of one name differ (an AVX2
    EPYC emulates bf16 at ~1 GFLOP/s, an AVX-512 one runs it natively): the capability tells
    such tables apart.
    """
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} ({torch.backends.cpu.get_cpu_capability()})"


def matmul_gflops(n: int, dtype: torch.dtype, min_seconds: float, max_calls: int = 50) -> float:
    """Best rate of an (n x n) @ (n x n) matmul over calls totalling about `min_seconds`."""
    return matmul_flops(torch.device("cpu"), dtype, n, min_seconds, max_calls) / 1e9


def copy_bandwidth_gbs(megabytes: int, repeats: int = 5) -> float:
    """Memory bandwidth from copying a buffer much larger than the caches (read + write)."""
    src = torch.ones(megabytes * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = min(seconds(lambda: dst.copy_(src)) for _ in range(repeats))
    return 2 * src.numel() * 4 / best / 1e9


def read_bandwidth_gbs(megabytes: int, repeats: int = 5) -> float:
    """Memory read bandwidth: summing a buffer much larger than the caches reads every byte once
    and writes almost nothing (what decoding does with the weights)."""
    buffer = torch.ones(megabytes * 2**20 // 4)
    buffer.sum()
    best = min(seconds(buffer.sum) for _ in range(repeats))
    return buffer.numel() * 4 / best / 1e9


def probe_machine(quick: bool) -> MachineInfo:
    """Measure the fp32 and bf16 matmul peaks and the memory bandwidth.

    fp32: square matmuls of 1024 and 2048 (512 and 1024 in quick mode), best rate.
    bf16: 512 (one 256 call first), and 1024 (not in quick mode) if it takes under ~2 s: bf16 is
    emulated on CPUs without AVX-512 BF16 / AMX, often 100x slower than fp32. bf16 counts as
    usable ("fast") when its 512 matmul is at least half as fast as fp32's.
    """
    import transformers

    sizes = (512, 1024) if quick else (1024, 2048)
    fp32 = {n: matmul_gflops(n, torch.float32, 0.2 if quick else 1.5) for n in sizes}
    fp32_size = max(fp32, key=fp32.__getitem__)
    bf16_size, bf16 = 256, matmul_gflops(256, torch.bfloat16, 0.0, max_calls=1)
    for n in (512,) if quick else (512, 1024):
        if 2 * n**3 / (bf16 * 1e9) > 2.0:
            break
        bf16_size, bf16 = n, max(bf16, matmul_gflops(n, torch.bfloat16, 0.5, max_calls=5))
    fp32_same = fp32.get(bf16_size) or matmul_gflops(bf16_size, torch.float32, 0.3)
    return MachineInfo(
        cpu=cpu_name(),
        cores=os.cpu_count() or 1,
        torch_threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        transformers_version=transformers.__version__,
        load_average=tuple(round(x, 2) for x in os.getloadavg()),  # type: ignore[arg-type]
        fp32_gflops=fp32[fp32_size],
        fp32_size=fp32_size,
        bf16_gflops=bf16,
        bf16_size=bf16_size,
        bf16_fast=bf16_size >= 512 and bf16 >= 0.5 * fp32_same,
        bandwidth_gbs=copy_bandwidth_gbs(64 if quick else 512, repeats=3 if quick else 5),
    )


def bf16_skip_reason(machine: MachineInfo) -> str:
    return (f"skipped: bf16 is emulated on this CPU (measured {machine.bf16_gflops:.1f} GFLOP/s "
            f"bf16 matmul vs {machine.fp32_gflops:.0f} fp32)")


# ----------------------------------------------------------------------------- tables


def add_matmul_option(parser: argparse.ArgumentParser) -> None:
    """`--matmul`: the float32 kernel a benchmark's training steps use (`training_kernel`)."""
    parser.add_argument("--matmul", choices=MATMUL_SETTINGS, default="auto",
                        help="float32 matmul kernel, as `glassgpt train --matmul` (default auto)")


def training_kernel(setting: str = "auto") -> str:
    """The float32 kernel `glassgpt train --matmul SETTING` trains on here (a start-up probe for
    "auto", `glassgpt.matmul.choose_matmul_kernel`): pick it once for all of a run's steps."""
    return choose_matmul_kernel(setting, torch.device("cpu"), torch.float32).kernel


def fmt(x: float | None, digits: int = 0) -> str:
    """A number for a table: thousands separators, '-' for missing."""
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table, columns padded so it also reads well in a terminal."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def presets_and_repeats(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[list[str], int]:
    """`--presets` (comma-separated) and `--repeats` of a benchmark whose `--quick` means the tiny
    preset, one turn; an unknown preset is argparse's one-line error."""
    presets = ["tiny"] if args.quick else args.presets.split(",")
    unknown = [name for name in presets if name not in PRESETS]
    if unknown:
        parser.error(f"unknown preset {unknown[0]!r}: choose from {', '.join(PRESETS)}")
    return presets, 1 if args.quick else args.repeats


def preset_benchmark_args(doc: str, argv: list[str] | None, presets: str, repeats: int,
                          step_help: str, quick_help: str) -> argparse.Namespace:
    """The options of a benchmark over presets (`--presets`, `--repeats`, `--step`, `--quick`),
    parsed; --repeats below 1 or an unknown preset is argparse's one-line error."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--presets", default=presets, help=f"comma-separated presets (default {presets})")
    parser.add_argument("--repeats", type=int, default=repeats, help=f"interleaved rounds (default {repeats})")
    parser.add_argument("--step", action="store_true", help=step_help)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    args.presets = args.presets.split(",")
    for name in args.presets:
        try:
            preset(name)
        except GlassError as err:
            parser.error(str(err))
    return args
