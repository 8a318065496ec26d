"""`glassgpt demo`: the main job: train a small GPT on the built-in corpus and show samples."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from glassgpt.commands.common import (
    DEFAULT_RUN,
    add_device_option,
    cache_dir,
    device,
    positive_float,
    positive_int,
)
from glassgpt.demo import run_demo, verdict
from glassgpt.errors import GlassError
from glassgpt.runs import RunFolder


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="train a small GPT on the built-in corpus in minutes, then show what it writes",
        description="Train the BPE tokenizer and the demo model on Austen, Shakespeare, the King James "
                    "Bible and Moby Dick, then continue prompts at temperatures 0, 0.8 and 1.2 and write "
                    "report.md with the loss curve, validation bits per byte and the samples.",
    )
    p.add_argument("--minutes", type=positive_float, default=4.0, help="training time (default 4)")
    p.add_argument("--max-steps", type=positive_int, metavar="N",
                   help="also stop after N optimizer steps (a quick check that is the same on any machine)")
    p.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default="auto",
                   help="auto (default) = bf16 where measured faster, as on CPUs with native bf16; "
                        "fp32 = the issue's measure on any machine")
    p.add_argument("--out", type=Path, default=DEFAULT_RUN, help=f"run folder (default {DEFAULT_RUN})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    add_device_option(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if RunFolder(args.out).is_run():
        if not args.overwrite:
            raise GlassError(f"{args.out} already holds a run: pass --overwrite to replace it, or --out DIR")
        shutil.rmtree(args.out)
    result = run_demo(args.out, args.minutes, cache_dir=cache_dir(), device=device(args),
                      show_progress=not args.no_progress, max_steps=args.max_steps, dtype=args.dtype)
    current = None
    for sample in result.samples:
        if sample.prompt != current:
            current = sample.prompt
            print(f"\n=== {sample.prompt!r}")
        print(f"[t={sample.temperature:g}] {sample.prompt}{sample.text}".replace("\n", " / "))
    val = result.train.val
    if val is not None:
        print(f"\nfinal validation: {val.bpb:.3f} bits per byte (loss {val.loss:.3f})")
    print(f"counting, for scale: character {result.ngram_n}-gram {result.ngram_bpb:.3f} bits per byte on the same "
          f"validation text: {verdict(val.bpb if val else None, result.ngram_bpb)}")
    print(f"report: {result.report_path}   loss curve: {RunFolder(args.out).loss_curve_path}")
    print(f"next: glassgpt generate --model {args.out} \"It is a truth universally\" --temperature 0.8")
    return 0
