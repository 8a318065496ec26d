"""The demo: train a small GPT on the built-in corpus in a few minutes, then show what it writes.

It trains the BPE tokenizer and the `demo` preset, continues a few prompts at temperatures
0, 0.8 and 1.2, and writes `report.md` (loss curve, final validation bits per byte, samples)
into the run folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from glassgpt.config import preset
from glassgpt.engine import Engine, SamplingConfig
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


def run_demo(out_dir: Path, minutes: float, *, cache_dir: Path | None, device: torch.device | None,
             show_progress: bool = True, log: Log = print, max_new_tokens: int = 60,
             max_steps: int | None = None) -> DemoResult:
    changes: dict[str, float] = {"time_budget_min": minutes}
    if max_steps is not None:
        changes["max_steps"] = max_steps
    config = dataclasses.replace(preset("demo"), train=dataclasses.replace(preset("demo").train, **changes))
    result = pretrain(config, out_dir, cache_dir=cache_dir, device=device, show_progress=show_progress, log=log)

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
    return DemoResult(result, samples, folder.write_report(_report(result, samples)))


def _report(result: TrainResult, samples: list[Sample]) -> str:
    val = result.val
    lines = [
        "# glassgpt demo report",
        "",
        f"- model: {result.num_parameters:,} parameters, trained {result.step:,} steps "
        f"in {result.elapsed_s:.0f} s ({result.tokens_per_s:,.0f} tokens/s at the end)",
    ]
    if val is not None:
        lines.append(f"- final validation: **{val.bpb:.3f} bits per byte** (loss {val.loss:.3f} nats/token, "
                     f"{val.tokens:,} held-out tokens)")
    lines += ["", "![loss curve](loss_curve.png)", "", "## Samples", ""]
    for s in samples:
        lines += [f"**{s.prompt!r} at temperature {s.temperature:g}:**", "", "> " + (s.prompt + s.text).replace("\n", "\n> "), ""]
    return "\n".join(lines) + "\n"
