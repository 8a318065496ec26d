"""Generation speed: our `Engine` vs transformers' `generate` on the same (random) weights.

Both decode greedily from the same prompt ids (bos + text, `prompt_tokens` in all) for exactly
`new_tokens` tokens: ours with `SamplingConfig(temperature=0, stop_at_eos=False)`, theirs with
`do_sample=False, use_cache=True` and no eos token, so neither stops early (checked: every
row has exactly `new_tokens` tokens). Batch 8 is one prompt with 8 samples: our engine
prefills once and copies the KV cache (`num_samples=8`); transformers gets the prompt
repeated 8 times. Tokens/s counts new tokens over the whole call (prefill included).

Correctness: in fp32 the greedy tokens of both must be identical token for token (and all 8
rows of a batch identical to each other); a mismatch is reported loudly and fails the run.
The random weights are scaled (`random_model`) so that greedy decoding does not just repeat
one token, which would make that check trivial.

The weight-streaming bound: each decode step reads every weight once, so a step cannot be
faster than (weight bytes / memory bandwidth); at batch b that is b tokens per step. Models
whose weights fit in the CPU caches can beat the bound.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from benchmarks.common import (
    MachineInfo,
    Rate,
    bf16_skip_reason,
    fmt,
    fmt_ratio,
    interleaved,
    markdown_table,
    ratio,
)
from glassgpt.config import ModelConfig
from glassgpt.engine import Engine, SamplingConfig
from glassgpt.interop.hf_llama import to_hf_model
from glassgpt.model import GPT
from glassgpt.tokenizer import Tokenizer

OURS, THEIRS = "glassgpt", "transformers"


@dataclass(frozen=True)
class GenerateCase:
    name: str
    model: ModelConfig
    tokenizer: Tokenizer
    new_tokens: int


@dataclass(frozen=True)
class GeneratePlan:
    cases: list[GenerateCase]
    prompt_tokens: int = 32
    batch_sizes: tuple[int, ...] = (1, 8)
    repeats: int = 3


@dataclass
class GenerateResult:
    case: str
    dtype: str
    batch_size: int
    prompt_tokens: int
    new_tokens: int
    params: int
    ours: Rate = field(default_factory=Rate)  # new tokens/s
    theirs: Rate = field(default_factory=Rate)
    counts_ok: bool = True  # every row had exactly new_tokens tokens
    identical: bool | None = None  # greedy tokens equal between ours and theirs (None: not checked)
    mismatch: str = ""
    distinct_tokens: int = 0  # distinct ids among the reference row's new tokens
    bound_tokens_per_s: float | None = None
    skipped: str | None = None

    def to_dict(self) -> dict[str, object]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("ours", "theirs")}
        out.update(ours_tokens_per_s=self.ours.to_dict(), theirs_tokens_per_s=self.theirs.to_dict(),
                   ratio=ratio(self.ours.median, self.theirs.median))
        return out


def random_model(config: ModelConfig, block_scale: float = 10.0) -> GPT:
    """Random weights (seed 0) whose greedy continuations vary, so the parity check means something.

    At the training init (std 0.02) the tied embedding dominates the residual stream and
    greedy decoding repeats one token forever; with the blocks' matrices `block_scale` times
    larger it produces a different token almost every step. Speed does not depend on the values.
    """
    torch.manual_seed(0)
    model = GPT(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("blocks.") and not name.endswith("norm.weight"):
                param.mul_(block_scale)
    return model


def find_prompt(engine: Engine, text: str, length: int) -> tuple[str, list[int]]:
    """A prompt string whose ids (bos included, as the engine encodes it) number exactly `length`."""
    ids = engine.tokenizer.encode(text)
    for start in range(min(200, len(ids) - length)):
        prompt = engine.tokenizer.decode(ids[start:start + length - 1])
        prompt_ids, _ = engine.encode_prompt(prompt)
        if len(prompt_ids) == length:
            return prompt, prompt_ids
    raise RuntimeError(f"could not find a prompt of exactly {length} tokens")


def ours_generate(engine: Engine, prompt: str, new_tokens: int, batch: int) -> list[list[int]]:
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=new_tokens, num_samples=batch, stop_at_eos=False)
    return [c.token_ids for c in engine.generate(prompt, sampling).completions]


def theirs_generate(model: torch.nn.Module, prompt_ids: list[int], new_tokens: int, batch: int,
                    pad_id: int) -> list[list[int]]:
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, use_cache=True,
                              eos_token_id=None, bos_token_id=None, pad_token_id=pad_id)
    ids = torch.tensor([prompt_ids]).repeat(batch, 1)
    out = model.generate(ids, generation_config=config, attention_mask=torch.ones_like(ids))
    return out[:, len(prompt_ids):].tolist()


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _timed(generate: Callable[[], list[list[int]]], sink: list[list[list[int]]]) -> Callable[[], float]:
    """A runner for `interleaved`: one generation, its rows kept in `sink`, new tokens/s returned."""
    def runner() -> float:
        start = time.perf_counter()
        rows = generate()
        elapsed = time.perf_counter() - start
        sink.append(rows)
        return sum(len(r) for r in rows) / elapsed
    return runner


def measure(case: GenerateCase, dtype_name: str, plan: GeneratePlan, machine: MachineInfo,
            prompt_text: str, log: Callable[[str], None]) -> list[GenerateResult]:
    """Both implementations at every batch size for one model and dtype."""
    if plan.prompt_tokens + case.new_tokens > case.model.context_length:
        # Past the context our engine slides its window while transformers extrapolates RoPE:
        # different computations, so neither the speed nor the tokens would compare.
        raise ValueError(f"{case.name}: {plan.prompt_tokens} prompt + {case.new_tokens} new tokens exceed "
                         f"the context of {case.model.context_length}")
    dtype = torch.float32 if dtype_name == "fp32" else torch.bfloat16
    weight_bytes = case.model.num_parameters() * (4 if dtype_name == "fp32" else 2)
    results = [GenerateResult(case.name, dtype_name, b, plan.prompt_tokens, case.new_tokens,
                              case.model.num_parameters()) for b in plan.batch_sizes]
    if dtype_name == "bf16" and not machine.bf16_fast:
        for r in results:
            r.skipped = bf16_skip_reason(machine)
        return results
    model = random_model(case.model)
    hf = to_hf_model(model)
    if dtype != torch.float32:
        model, hf = copy.deepcopy(model).to(dtype), hf.to(dtype)
    engine = Engine(model, case.tokenizer)
    prompt, prompt_ids = find_prompt(engine, prompt_text, plan.prompt_tokens)
    pad_id = case.tokenizer.pad_id

    for result in results:
        b, n = result.batch_size, case.new_tokens
        log(f"  generate {case.name} {dtype_name} batch {b}: {n} new tokens")
        # Warm up both (allocator, thread pools, lazy imports) with a short generation.
        ours_generate(engine, prompt, min(n, 4), b)
        theirs_generate(hf, prompt_ids, min(n, 4), b, pad_id)
        outputs: dict[str, list[list[list[int]]]] = {OURS: [], THEIRS: []}
        rates = interleaved({
            OURS: _timed(lambda b=b, n=n: ours_generate(engine, prompt, n, b), outputs[OURS]),
            THEIRS: _timed(lambda b=b, n=n: theirs_generate(hf, prompt_ids, n, b, pad_id), outputs[THEIRS]),
        }, plan.repeats)
        result.ours, result.theirs = rates[OURS], rates[THEIRS]
        result.counts_ok = all(len(row) == n and len(rows) == b
                               for runs in outputs.values() for rows in runs for row in rows)
        result.bound_tokens_per_s = b * machine.bandwidth_gbs * 1e9 / weight_bytes
        if dtype_name == "fp32":
            reference = outputs[OURS][0][0]
            result.distinct_tokens = len(set(reference))
            for name, runs in outputs.items():
                for rows in runs:
                    for i, row in enumerate(rows):
                        diff = first_difference(row, reference)
                        if diff is not None and result.identical is not False:
                            result.identical = False
                            result.mismatch = (f"{name} row {i} differs from glassgpt row 0 at new token {diff}: "
                                               f"{row[diff:diff + 5]} vs {reference[diff:diff + 5]}")
            if result.identical is None:
                result.identical = True
    return results


def run(plan: GeneratePlan, machine: MachineInfo, prompt_text: str,
        log: Callable[[str], None]) -> list[GenerateResult]:
    results = []
    for case in plan.cases:
        for dtype_name in ("fp32", "bf16"):
            results += measure(case, dtype_name, plan, machine, prompt_text, log)
    return results


def table(results: list[GenerateResult]) -> str:
    rows = []
    for r in results:
        if r.skipped:
            rows.append([r.case, f"{r.params / 1e6:.1f}M", r.dtype, str(r.batch_size),
                         f"{r.prompt_tokens}+{r.new_tokens}", "-", "-", "-", "-", "-", r.skipped])
            continue
        if r.identical is None:
            check = "not checked (bf16)"
        elif r.identical:
            check = f"identical ({r.distinct_tokens} distinct)"
        else:
            check = "MISMATCH: " + r.mismatch
        if not r.counts_ok:
            check += "; WRONG TOKEN COUNT"
        pct = 100 * r.ours.median / r.bound_tokens_per_s if r.bound_tokens_per_s else None
        rows.append([
            r.case, f"{r.params / 1e6:.1f}M", r.dtype, str(r.batch_size), f"{r.prompt_tokens}+{r.new_tokens}",
            fmt(r.ours.median, 1), fmt(r.theirs.median, 1), fmt_ratio(ratio(r.ours.median, r.theirs.median)),
            fmt(r.bound_tokens_per_s, 0), fmt(pct, 0), check,
        ])
    return "### Generation (greedy, new tokens/s incl. prefill)\n\n" + markdown_table(
        ["model", "params", "dtype", "batch", "prompt+new", "glassgpt tok/s", "transformers tok/s", "ours/HF",
         "weight-stream bound tok/s", "ours % of bound", "greedy tokens"], rows)
