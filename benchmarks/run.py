"""Run glassgpt's benchmarks against Hugging Face and print markdown tables with ratios.

    python benchmarks/run.py [--quick] [--only train,generate,tokenizer] [--json OUT] [--threads N]

Measures, in one run: the machine's matmul peaks and memory bandwidth; tokenizer encoding
MB/s (tiktoken path vs `tokenizers`); training tokens/s and GFLOP/s (our GPT vs
`LlamaForCausalLM` with the same weights, batches and optimiser); greedy generation tokens/s
(our Engine vs `generate`), checking that both produce the same tokens. `--quick` runs every
benchmark tiny, for tests. The exit status is 1 when a correctness check failed.
See benchmarks/README.md for what exactly is measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `glassgpt` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glassgpt.entry import prepare_process  # noqa: E402

prepare_process(os.environ)  # before torch, as the `glassgpt` command does: MKL's fast code on AMD CPUs

import torch  # noqa: E402

from benchmarks import bench_generate, bench_tokenizer, bench_train  # noqa: E402
from benchmarks.common import MachineInfo, fmt, markdown_table, probe_machine  # noqa: E402
from benchmarks.shared import Resources  # noqa: E402
from glassgpt.config import PRESETS  # noqa: E402

BENCHMARKS = ("tokenizer", "train", "generate")


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of one run: everything tiny with --quick, a few minutes of measurement without."""

    bpe_vocab: int
    bpe_train_chars: int | None  # characters of each work the BPE is trained on (None: all)
    train_chars: int  # characters of each work tokenized as training data
    tokenizer: bench_tokenizer.TokenizerPlan
    train_cases: tuple[tuple[str, int], ...]  # (preset, batch size)
    train_warmup: int
    train_steps: int
    train_repeats: int
    train_round_seconds: float
    hf_attention: tuple[str, ...]
    bf16_max_step_s: float
    generate_cases: tuple[tuple[str, int], ...]  # (preset, new tokens)
    prompt_tokens: int
    generate_repeats: int


FULL = Plan(
    bpe_vocab=4096, bpe_train_chars=None, train_chars=400_000,
    tokenizer=bench_tokenizer.TokenizerPlan(chars_per_work=1_000_000, repeats=3),
    train_cases=(("demo", 32), ("small", 16)), train_warmup=2, train_steps=2, train_repeats=5,
    train_round_seconds=3.0, hf_attention=("sdpa", "eager"), bf16_max_step_s=8.0,
    generate_cases=(("demo", 96), ("gpt2", 64)), prompt_tokens=32, generate_repeats=3,
)
QUICK = Plan(
    bpe_vocab=1024, bpe_train_chars=100_000, train_chars=50_000,
    tokenizer=bench_tokenizer.TokenizerPlan(chars_per_work=50_000, repeats=2),
    train_cases=(("tiny", 4), ("demo", 2)), train_warmup=1, train_steps=1, train_repeats=2,
    train_round_seconds=0.0, hf_attention=("sdpa",), bf16_max_step_s=0.0,
    generate_cases=(("tiny", 16), ("demo", 8)), prompt_tokens=16, generate_repeats=2,
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine_table(m: MachineInfo) -> str:
    bf16 = f"{m.bf16_gflops:.1f} ({m.bf16_size}^2{'' if m.bf16_fast else ', emulated'})"
    return "### Machine\n\n" + markdown_table(
        ["CPU", "cores", "torch threads", "fp32 matmul GFLOP/s", "bf16 matmul GFLOP/s", "copy GB/s",
         "load avg (1/5/15 min)", "torch", "transformers"],
        [[m.cpu, str(m.cores), str(m.torch_threads), f"{m.fp32_gflops:.0f} ({m.fp32_size}^2)", bf16,
          fmt(m.bandwidth_gbs, 1), " / ".join(str(x) for x in m.load_average), m.torch_version,
          m.transformers_version]])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps (seconds; for tests)")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--json", type=Path, help="also write every number to this JSON file")
    parser.add_argument("--compile", action="store_true",
                        help="also train with torch.compile on both sides (minutes of compiling on a CPU)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    args.only = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(args.only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}: choose from {', '.join(BENCHMARKS)}")
    return args


@dataclasses.dataclass
class Report:
    """What a run produces: printed sections, the JSON data, correctness checks, timings."""

    data: dict[str, object]
    sections: list[str] = dataclasses.field(default_factory=list)
    checks: dict[str, bool] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def tokenizer_section(plan: Plan, resources: Resources, machine: MachineInfo, args: argparse.Namespace,
                      report: Report) -> None:
    tokenizers = {f"BPE {resources.bpe.vocab_size} (built-in corpus)": resources.bpe, "GPT-2": resources.gpt2}
    results = bench_tokenizer.run(plan.tokenizer, tokenizers, [d.text for d in resources.documents], log)
    report.sections.append(bench_tokenizer.table(results)
                           + f"\n\n(Training the BPE took {resources.bpe_train_seconds:.1f} s.)")
    report.data["tokenizer"] = [r.to_dict() for r in results]
    report.data["bpe_train_seconds"] = resources.bpe_train_seconds
    report.checks["tokenizer_ids_identical"] = all(r.identical for r in results)


def train_section(plan: Plan, resources: Resources, machine: MachineInfo, args: argparse.Namespace,
                  report: Report) -> None:
    vocab = resources.bpe.vocab_size
    cases = [bench_train.make_case(name, batch, vocab_size=vocab) for name, batch in plan.train_cases]
    settings = [bench_train.Setting("fp32", attention) for attention in plan.hf_attention]
    if args.compile:
        settings.append(bench_train.Setting("fp32", "sdpa", compile=True))
    settings.append(bench_train.Setting("bf16"))
    train_plan = bench_train.TrainPlan(cases, settings, plan.train_warmup, plan.train_steps,
                                       plan.train_repeats, plan.train_round_seconds, plan.bf16_max_step_s)
    results = bench_train.run(train_plan, machine, resources.train_ids, log)
    report.sections.append(bench_train.tables(results, machine))
    report.data["train"] = [r.to_dict() for r in results]
    report.checks["train_first_loss_equal"] = all(r.loss_ok for r in results)


def generate_section(plan: Plan, resources: Resources, machine: MachineInfo, args: argparse.Namespace,
                     report: Report) -> None:
    cases = []
    for name, new_tokens in plan.generate_cases:
        tokenizer = resources.gpt2 if PRESETS[name].tokenizer.kind == "gpt2" else resources.bpe
        model = dataclasses.replace(PRESETS[name].model, vocab_size=tokenizer.vocab_size)
        cases.append(bench_generate.GenerateCase(name, model, tokenizer, new_tokens))
    gen_plan = bench_generate.GeneratePlan(cases, plan.prompt_tokens, repeats=plan.generate_repeats)
    results = bench_generate.run(gen_plan, machine, resources.prompt_text(), log)
    report.sections.append(bench_generate.table(results))
    report.data["generate"] = [r.to_dict() for r in results]
    measured = [r for r in results if not r.skipped]
    report.checks["generate_token_counts"] = all(r.counts_ok for r in measured)
    report.checks["greedy_identical"] = all(r.identical for r in measured if r.identical is not None)
    for r in measured:
        if r.identical is False:
            log(f"!!! GREEDY MISMATCH {r.case} {r.dtype} batch {r.batch_size}: {r.mismatch}")


SECTIONS = {"tokenizer": tokenizer_section, "train": train_section, "generate": generate_section}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; print tables; return 0, or 1 if a correctness check failed."""
    args = parse_args(argv)
    start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"
    log(f"probing the machine ({mode} mode) ...")
    machine = probe_machine(args.quick)
    report = Report({"mode": mode, "argv": sys.argv[1:] if argv is None else argv, "machine": machine.to_dict()})
    report.sections.append(machine_table(machine))
    report.seconds["machine"] = time.perf_counter() - start
    resources = Resources(plan.bpe_vocab, plan.bpe_train_chars, plan.train_chars)
    for name in BENCHMARKS:
        if name in args.only:
            log(f"{name} benchmark ...")
            section_start = time.perf_counter()
            SECTIONS[name](plan, resources, machine, args, report)
            report.seconds[name] = time.perf_counter() - section_start

    runtime = time.perf_counter() - start
    checks_ok = all(report.checks.values())
    failed = [name for name, ok in report.checks.items() if not ok]
    report.sections.append(
        f"Checks: {'all passed' if checks_ok else 'FAILED: ' + ', '.join(failed)} ({', '.join(report.checks)}). "
        f"Total runtime {runtime:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in report.seconds.items())}).")
    print("\n\n".join(report.sections), flush=True)
    if args.json:
        report.data.update(checks=report.checks, checks_ok=checks_ok, runtime_s=runtime,
                           seconds_by_section=report.seconds)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.data, indent=2) + "\n", encoding="utf-8")
    return 0 if checks_ok else 1


if __name__ == "__main__":
    sys.exit(main())
