"""`glassgpt pipeline`: base model -> SFT -> RL -> report.md, in one command."""

from __future__ import annotations

import argparse
from pathlib import Path

from glassgpt.commands.common import (
    add_base_model_option,
    add_device_option,
    base_model_path,
    device,
    positive_int,
)
from glassgpt.train.pipeline import EVAL_PROBLEMS, RL_DIR, SFT_DIR, run_pipeline

DEFAULT_OUT = Path("runs/pipeline")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pipeline", help="chat-tune a base model, train it by RL, and compare all three (report.md)",
        description=f"The whole way from a text model to a reasoning chat model: `glassgpt sft --out OUT/{SFT_DIR}`, "
                    f"then `glassgpt rl --model OUT/{SFT_DIR} --out OUT/{RL_DIR}` (each with its defaults), then "
                    "held-out accuracy of the base (few-shot), SFT and RL models on every built-in task, written "
                    "with the curves and answers side by side to OUT/report.md.",
    )
    add_base_model_option(p)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder of the pipeline (default: {DEFAULT_OUT})")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted pipeline: finished stages are kept, an unfinished one resumes")
    p.add_argument("--problems", type=positive_int, default=EVAL_PROBLEMS, metavar="N",
                   help=f"held-out problems per task in the report (default {EVAL_PROBLEMS})")
    p.add_argument("--sft-steps", type=positive_int, metavar="N", help="SFT steps (default: sft's)")
    p.add_argument("--rl-steps", type=positive_int, metavar="N", help="RL steps (default: rl's)")
    add_device_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    base = base_model_path(args)
    result = run_pipeline(
        base, args.out, resume=args.resume, problems=args.problems,
        sft_train={"max_steps": args.sft_steps} if args.sft_steps else None,
        rl_train={"max_steps": args.rl_steps} if args.rl_steps else None,
        device=device(args), show_progress=not args.no_progress)
    minutes = sum(result.seconds.values()) / 60
    print(f"report: {result.report_path} ({minutes:.1f} min)   "
          f"try it: glassgpt chat --model {result.rl_dir} \"What is 347 + 589?\"")
    return 0
