"""`glassgpt eval`: a model's bits per byte (and loss) on any text."""

from __future__ import annotations

import argparse

from glassgpt.commands.common import add_model_option, model_path
from glassgpt.data.corpus import load_documents
from glassgpt.evaluate import bits_per_byte


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="bits per byte of a model on a text",
        description="Measure how well a model predicts a text: bits per byte (lower is better; "
                    "comparable across tokenizers) and loss per token.",
    )
    add_model_option(p)
    p.add_argument("--data", required=True, help="text file, folder of .txt files, or glob")
    p.add_argument("--max-tokens", type=int, default=1_000_000, help="evaluate at most this many tokens")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    text = "\n".join(d.text for d in load_documents(args.data))
    result = bits_per_byte(model_path(args), text, max_tokens=args.max_tokens)
    print(f"{result.bpb:.4f} bits per byte  (loss {result.loss:.4f} nats/token over {result.tokens:,} tokens)")
    return 0
