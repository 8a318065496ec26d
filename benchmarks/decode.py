"""Decode speed on a CPU: glassgpt float32 and int8 against transformers float32, same weights.

    python benchmarks/decode.py [--quick] [--json OUT] [--threads N]

Two models with random weights: the demo preset (Llama architecture; transformers'
`LlamaForCausalLM`) and GPT-2 small's shape as GPT-2 itself (`GPT2LMHeadModel`, 124M
parameters). Each is built in transformers (seed 0, its blocks' matrices scaled up so that
greedy decoding does not repeat one token) and converted with `glassgpt.interop.hf_import.convert`,
the code `glassgpt import-hf` runs, so both sides hold the very same weights.

At batch 1 and 8 (one prompt, 8 greedy samples), in alternation (`interleaved`): glassgpt
float32, glassgpt int8 with each method of `glassgpt.quantize` ("avx2": glassgpt's int8 x int8
kernel; "dynamic": fbgemm int8 x int8; "weight-only": int8 weights, float activations), and
transformers' `generate` in float32.
Tokens/s counts new tokens over the whole call, prefill of the `prompt_tokens` included.

Bandwidth: a decode step reads every linear layer's weights once (4 bytes each in float32,
1 in int8, plus a float scale per output row), so `bytes per step x steps/s` over the
machine's measured memory read bandwidth (`read_bandwidth_gbs`) says how close a run comes
to the memory's limit; at batch b a step makes b tokens. Small models whose weights fit in
the caches can pass 100%.

Checks (exit status 1 if one fails): glassgpt float32 and transformers produce the same greedy
tokens, and every run makes exactly `new_tokens` tokens per row. int8's greedy agreement with
float32 is reported, not checked (the quality check is `glassgpt.quantize.compare_with_float`).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `glassgpt` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glassgpt.entry import prepare_process  # noqa: E402

prepare_process(os.environ)  # before torch, as the `glassgpt` command does: MKL's fast code on AMD CPUs

import torch  # noqa: E402

from benchmarks.bench_generate import first_difference, theirs_generate  # noqa: E402
from benchmarks.common import (  # noqa: E402
    Rate,
    cpu_name,
    fmt,
    fmt_ratio,
    interleaved,
    markdown_table,
    ratio,
    read_bandwidth_gbs,
)
from glassgpt.config import PRESETS, ModelConfig  # noqa: E402
from glassgpt.data.corpus import builtin_documents  # noqa: E402
from glassgpt.engine import Engine, SamplingConfig  # noqa: E402
from glassgpt.interop.hf_files import HFConfig  # noqa: E402
from glassgpt.interop.hf_import import convert  # noqa: E402
from glassgpt.interop.hf_llama import llama_config_dict  # noqa: E402
from glassgpt.model import GPT  # noqa: E402
from glassgpt.quantize import METHODS, AVX2Int8Linear, Int8Linear, quantize_for_decoding  # noqa: E402
from glassgpt.tokenizer import Tokenizer  # noqa: E402

FLOAT, HF = "glassgpt fp32", "transformers fp32"
INT8 = {method: f"glassgpt int8 {method}" for method in METHODS}


@dataclass(frozen=True)
class Case:
    name: str
    architecture: str  # "llama" | "gpt2"
    model: dict  # the transformers config fields
    bpe_vocab: int = 0  # a BPE trained on the built-in corpus with this vocabulary; 0: GPT-2's tokenizer


@dataclass(frozen=True)
class Plan:
    cases: tuple[Case, ...]
    batch_sizes: tuple[int, ...] = (1, 8)
    prompt_tokens: int = 32
    new_tokens: int = 64
    repeats: int = 3
    bandwidth_megabytes: int = 512
    bpe_chars_per_work: int = 300_000


def _llama_fields(config: ModelConfig) -> dict:
    fields = llama_config_dict(config)
    for name in ("architectures", "model_type", "torch_dtype"):
        fields.pop(name)
    return fields


GPT2_SMALL = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
FULL = Plan(cases=(Case("demo", "llama", _llama_fields(PRESETS["demo"].model), PRESETS["demo"].model.vocab_size),
                   Case("gpt2", "gpt2", GPT2_SMALL)))
QUICK = Plan(
    cases=(Case("demo-tiny", "llama", _llama_fields(ModelConfig(vocab_size=512, context_length=64, n_layer=2,
                                                               n_head=4, n_kv_head=2, d_model=64)), 512),
           Case("gpt2-tiny", "gpt2", dict(GPT2_SMALL, n_positions=64, n_embd=64, n_layer=2, n_head=4))),
    prompt_tokens=8, new_tokens=8, repeats=1, bandwidth_megabytes=64, bpe_chars_per_work=30_000)


@dataclass
class Row:
    case: str
    params: int
    batch_size: int
    implementation: str
    rate: Rate = field(default_factory=Rate)  # new tokens/s
    bytes_per_step: int = 0  # weight bytes a decode step reads
    greedy: str = ""  # agreement with glassgpt fp32's first row

    def to_dict(self) -> dict[str, object]:
        out = {k: v for k, v in asdict(self).items() if k != "rate"}
        out["tokens_per_s"] = self.rate.to_dict()
        return out


def hf_model(case: Case, block_scale: float = 10.0) -> torch.nn.Module:
    """transformers' model for the case, random (seed 0), the blocks' matrices scaled up."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if case.architecture == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(**case.model))
    else:
        model = LlamaForCausalLM(LlamaConfig(**case.model))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2 and (".h." in name or ".layers." in name):
                param.mul_(block_scale)
    return model.eval()


def weight_bytes_per_step(model: torch.nn.Module) -> int:
    """Bytes of the linear layers' weights (and int8 scales): what one decode step reads."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    # An AVX2 layer holds two int8 copies (its kernel's, and fbgemm's for larger batches) and a
    # step reads one of them: count the layer, not its fbgemm child.
    spare = {id(m.batched) for m in model.modules() if isinstance(m, AVX2Int8Linear)}
    total = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            total += module.weight.numel() * module.weight.element_size()
        elif isinstance(module, (AVX2Int8Linear, Int8Linear, DynamicInt8Linear)) and id(module) not in spare:
            total += module.in_features * module.out_features + 4 * module.out_features  # a byte per weight, a scale per row
    return total


def tokenizer_for(case: Case, chars_per_work: int) -> Tokenizer:
    if not case.bpe_vocab:
        return Tokenizer.gpt2()
    return Tokenizer.train_bpe([d.text[:chars_per_work] for d in builtin_documents()], case.bpe_vocab)


def prompt_ids(tokenizer: Tokenizer, length: int) -> list[int]:
    """bos + the first `length - 1` tokens of Moby Dick's opening."""
    text = next(d.text for d in builtin_documents() if d.name == "mobydick")
    start = max(0, text.find("Call me Ishmael"))
    return [tokenizer.bos_id, *tokenizer.encode(text[start:start + 20 * length])[:length - 1]]


def measure(case: Case, plan: Plan, log) -> tuple[list[Row], dict[str, bool]]:
    hf = hf_model(case)
    config, weights = convert(HFConfig(hf.config.to_dict(), case.name), hf.state_dict())
    ours = GPT(config)
    ours.load_state_dict(weights, strict=not config.tie_embeddings)
    ours.eval()
    models = {FLOAT: ours} | {INT8[m]: quantize_for_decoding(copy.deepcopy(ours), m) for m in METHODS}
    tokenizer = tokenizer_for(case, plan.bpe_chars_per_work)
    ids = prompt_ids(tokenizer, plan.prompt_tokens)
    n = plan.new_tokens
    rows, checks = [], {"greedy_identical": True, "token_counts": True}
    for b in plan.batch_sizes:
        log(f"  {case.name} batch {b}: {n} new tokens after {len(ids)}")
        sampling = SamplingConfig(temperature=0, max_new_tokens=n, num_samples=b, stop_at_eos=False)
        outputs: dict[str, list[list[list[int]]]] = {name: [] for name in [*models, HF]}

        def runner(name: str, b: int = b, sampling: SamplingConfig = sampling,
                   outputs: dict[str, list[list[list[int]]]] = outputs):
            def run() -> float:
                start = time.perf_counter()
                if name == HF:
                    made = theirs_generate(hf, ids, n, b, tokenizer.pad_id)
                else:
                    made = [s.token_ids for s in Engine(models[name], tokenizer).generate_ids(ids, sampling).samples]
                elapsed = time.perf_counter() - start
                outputs[name].append(made)
                return sum(len(r) for r in made) / elapsed
            return run

        for name in outputs:  # warm up: allocator, thread pools, lazy imports
            runner(name)()
            outputs[name].clear()
        rates = interleaved({name: runner(name) for name in outputs}, plan.repeats)
        reference = outputs[FLOAT][0][0]
        for name, runs in outputs.items():
            made = [row for rows in runs for row in rows]
            checks["token_counts"] &= all(len(row) == n for row in made) and all(len(rows) == b for rows in runs)
            agree = sum(x == y for row in made for x, y in zip(row, reference, strict=False))
            greedy = f"{agree / max(1, len(made) * n):.0%} agree"
            if name == HF:
                differences = [first_difference(row, reference) for row in made]
                identical = all(d is None for d in differences)
                checks["greedy_identical"] &= identical
                greedy = "identical" if identical else f"MISMATCH at new token {min(d for d in differences if d is not None)}"
            step_bytes = weight_bytes_per_step(models.get(name, ours))
            rows.append(Row(case.name, config.num_parameters(), b, name, rates[name], step_bytes, greedy))
    return rows, checks


def table(rows: list[Row], bandwidth_gbs: float) -> str:
    hf_rate = {(r.case, r.batch_size): r.rate.median for r in rows if r.implementation == HF}
    lines = []
    for r in rows:
        steps_per_s = r.rate.median / r.batch_size
        share = 100 * r.bytes_per_step * steps_per_s / (bandwidth_gbs * 1e9)
        lines.append([r.case, f"{r.params / 1e6:.1f}M", str(r.batch_size), r.implementation, fmt(r.rate.median, 1),
                      fmt_ratio(ratio(r.rate.median, hf_rate[(r.case, r.batch_size)])),
                      f"{r.bytes_per_step / 1e6:.1f}", fmt(share, 1), r.greedy])
    return "### Decoding (greedy, new tokens/s incl. prefill)\n\n" + markdown_table(
        ["model", "params", "batch", "implementation", "tok/s", "vs transformers", "weight MB/step",
         "% of read bandwidth", "greedy vs glassgpt fp32"], lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, one repeat (seconds; for tests)")
    parser.add_argument("--json", type=Path, help="also write every number to this JSON file")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = QUICK if args.quick else FULL

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    bandwidth = read_bandwidth_gbs(plan.bandwidth_megabytes)
    log(f"memory read bandwidth {bandwidth:.1f} GB/s ({torch.get_num_threads()} threads)")
    rows, checks = [], {"greedy_identical": True, "token_counts": True}
    for case in plan.cases:
        case_rows, case_checks = measure(case, plan, log)
        rows += case_rows
        checks = {k: checks[k] and case_checks[k] for k in checks}
    ok = all(checks.values())
    print(f"{cpu_name()}, {torch.get_num_threads()} torch threads, read bandwidth {bandwidth:.1f} GB/s\n")
    print(table(rows, bandwidth))
    print(f"\nChecks: {'all passed' if ok else 'FAILED'} ({', '.join(f'{k} {v}' for k, v in checks.items())})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"mode": "quick" if args.quick else "full", "read_bandwidth_gbs": bandwidth,
                                         "threads": torch.get_num_threads(), "rows": [r.to_dict() for r in rows],
                                         "checks": checks, "checks_ok": ok}, indent=2) + "\n", encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
