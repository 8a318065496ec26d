"""The demo: train a small GPT on the built-in corpus in a few minutes, then show what it writes.

It trains the BPE tokenizer and the `demo` preset, continues a few prompts at temperatures
0, 0.8 and 1.2, and writes `report.md` (loss curve, final validation bits per byte, samples)
into the run folder. For scale it also scores the character 8-gram model (counting, see
`glassgpt ngram`) on the same validation text: the GPT has to beat counting to earn its keep.

The demo's budget is minutes, so a slower CPU trains it on fewer tokens. Its model is narrow
(d_model 96) for that reason: in the same minutes it trains on 2-2.5x the tokens of a 192-wide one
and learns more from them, on this project's fast CPU and more so on a slow laptop's (README, "How
the demo recipe was chosen"; `benchmarks/tune_demo.py`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from glassgpt.config import RunConfig, preset
from glassgpt.data.corpus import load_documents, split_documents
from glassgpt.engine import Engine, SamplingConfig
from glassgpt.explain.ngram import CHAR_MAX_N, CharNGrams
from glassgpt.runs import RunFolder
from glassgpt.runtime import Log
from glassgpt.train.pretrain import TrainResult, pretrain

PROMPTS = ("It is a truth universally", "To be, or not to be", "In the beginning", "Call me Ishmael.")
TEMPERATURES = (0.0, 0.8, 1.2)


@dataclass(frozen=True)
class Sample:
    prompt: str
    temperature: float
    text: str


@dataclass(frozen=True)
class DemoResult:
    train: TrainResult
    samples: list[Sample]
    report_path: Path
    ngram_bpb: float  # the character 8-gram's bits per byte on the same validation documents
    ngram_n: int = CHAR_MAX_N


def counting_baseline(config: RunConfig) -> float:
    """Bits per byte of the character 8-gram (Kneser-Ney) on the run's own validation split."""
    split = split_documents(load_documents(config.data), config.train.val_fraction)
    counts = CharNGrams([d.text for d in split.train], CHAR_MAX_N)
    return counts.bits_per_byte([d.text for d in split.val], [CHAR_MAX_N])[0]


def run_demo(out_dir: Path, minutes: float, *, cache_dir: Path | None, device: torch.device | None,
             show_progress: bool = True, log: Log = print, max_new_tokens: int = 60,
             max_steps: int | None = None, dtype: str = "auto") -> DemoResult:
    changes: dict[str, float | str] = {"time_budget_min": minutes, "dtype": dtype}
    if max_steps is not None:
        changes["max_steps"] = max_steps
    config = dataclasses.replace(preset("demo"), train=dataclasses.replace(preset("demo").train, **changes))
    result = pretrain(config, out_dir, cache_dir=cache_dir, device=device, show_progress=show_progress, log=log)

    ngram_bpb = counting_baseline(config)
    folder = RunFolder(out_dir)
    run = folder.load(device or "cpu")
    engine = Engine(run.model, run.tokenizer)
    samples = []
    for seed, prompt in enumerate(PROMPTS):
        for temperature in TEMPERATURES:
            # One seed per prompt: its three temperatures are comparable, its draws its own.
            sampling = SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
            text = engine.generate(prompt, sampling).completions[0].text
            samples.append(Sample(prompt, temperature, text))
    report = folder.write_report(_report(result, samples, ngram_bpb))
    return DemoResult(result, samples, report, ngram_bpb)


def verdict(gpt_bpb: float | None, ngram_bpb: float) -> str:
    """One phrase comparing the GPT with counting (lower bits per byte is better)."""
    if gpt_bpb is None:
        return "the GPT was not evaluated"
    # compare the numbers as printed (3 decimals), so the gap is their visible difference
    gpt_bpb, ngram_bpb = round(gpt_bpb, 3), round(ngram_bpb, 3)
    if gpt_bpb < ngram_bpb:
        return f"the GPT is {ngram_bpb - gpt_bpb:.3f} better"
    return f"the GPT is {gpt_bpb - ngram_bpb:.3f} worse: train longer (--minutes) to overtake counting"


def _report(result: TrainResult, samples: list[Sample], ngram_bpb: float) -> str:
    val = result.val
    lines = [
        "# glassgpt demo report",
        "",
        f"- model: {result.num_parameters:,} parameters, trained {result.step:,} steps "
        f"in {result.elapsed_s:.0f} s ({result.tokens_per_s:,.0f} tokens/s at the end"
        + (f", {result.mfu:.0%} of the measured matmul peak)" if result.mfu is not None else ")"),
    ]
    if val is not None:
        lines.append(f"- final validation: **{val.bpb:.3f} bits per byte** (loss {val.loss:.3f} nats/token, "
                     f"{val.tokens:,} held-out tokens)")
    lines.append(f"- counting for scale: the character {CHAR_MAX_N}-gram model scores {ngram_bpb:.3f} bits per "
                 f"byte on the same validation text ({verdict(val.bpb if val else None, ngram_bpb)})")
    lines += ["", "![loss curve](loss_curve.png)", "", "## Samples", ""]
    for s in samples:
        lines += [f"**{s.prompt!r} at temperature {s.temperature:g}:**", "", "> " + (s.prompt + s.text).replace("\n", "\n> "), ""]
    return "\n".join(lines) + "\n"
