"""`glassgpt sft`: chat-tune a pretrained model on conversations (built-in tasks, or your JSONL)."""

from __future__ import annotations

import argparse
from pathlib import Path

from glassgpt.commands.common import (
    add_base_model_option,
    add_device_option,
    base_model_path,
    device,
)
from glassgpt.commands.train_cmd import add_budget_options, add_training_options, train_changes
from glassgpt.errors import GlassError
from glassgpt.runs import RunFolder
from glassgpt.train.sft import SFT_TRAIN, sft, sft_config

DEFAULT_OUT = Path("runs/chat")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sft", help="chat-tune a pretrained model (supervised fine-tuning on conversations)",
        description="Fine-tune a base model on conversations so that it answers as an assistant and stops. "
                    "Data: the built-in tasks (arithmetic, counting letters, questions about the books, who "
                    "glassgpt is), or a JSONL file with one {\"messages\": [...]} per line (OpenAI's format). "
                    f"Recipe: AdamW lr {SFT_TRAIN.lr:g}, {SFT_TRAIN.max_steps} steps of {SFT_TRAIN.batch_size} "
                    "packed conversations (the flags below change it).",
    )
    add_base_model_option(p)
    p.add_argument("--data", help="conversations, one JSON object per line (default: the built-in tasks)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"run folder to write (default: {DEFAULT_OUT})")
    p.add_argument("--resume", action="store_true", help="continue the SFT run in --out from its last checkpoint")
    add_finetune_options(p)
    p.set_defaults(func=run)


def add_finetune_options(p: argparse.ArgumentParser) -> None:
    """Budget, recipe, device and progress flags of the stages that start from a trained model."""
    add_budget_options(p)
    add_training_options(p)
    add_device_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")


def run(args: argparse.Namespace) -> int:
    if args.resume:
        if args.model is not None or args.data is not None:
            raise GlassError("--resume continues the saved base model and data: drop --model and --data")
        config = RunFolder(args.out).load_config().for_resume(train=train_changes(args))
    else:
        config = sft_config(base_model_path(args), data=args.data, train=train_changes(args))
    result = sft(config, args.out, resume=args.resume, device=device(args), show_progress=not args.no_progress)
    if result.val is not None:
        print(f"final validation loss on held-out answers: {result.val.loss:.4f}")
    print(f"try it: glassgpt chat --model {args.out} \"What is 347 + 589?\"   "
          f"measure it: glassgpt eval-chat --model {args.out}")
    return 0
