"""`glassgpt corpus`: show the built-in corpus (or your data) and its train/validation split."""

from __future__ import annotations

import argparse

from glassgpt.data.corpus import builtin_provenance, load_documents, split_documents


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "corpus",
        help="list the documents of the built-in corpus (or --data) and their split",
        description="List documents, sizes and the validation split (the tail of each document).",
    )
    p.add_argument("--data", help="text file, folder of .txt files, or glob (default: built-in)")
    p.add_argument("--provenance", action="store_true", help="print the built-in corpus sources")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.provenance:
        print(builtin_provenance())
        return 0
    split = split_documents(load_documents(args.data))
    val_sizes = {d.name: len(d.text) for d in split.val}
    print(f"{'document':40s} {'train chars':>12s} {'val chars':>10s}")
    for doc in split.train:
        print(f"{doc.name[-40:]:40s} {len(doc.text):12,d} {val_sizes.get(doc.name, 0):10,d}")
    return 0
