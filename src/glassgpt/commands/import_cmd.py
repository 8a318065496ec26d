"""`glassgpt import-hf`: a Hugging Face GPT-2 or Llama folder as a glassgpt run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from glassgpt.interop.hf_import import FAMILIES, import_hf


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import-hf", help="make a run folder from a Hugging Face GPT-2 or Llama folder on disk",
        description=f"Import a model folder written by transformers' save_pretrained ({', '.join(FAMILIES)}): "
                    "config.json, model.safetensors or pytorch_model.bin (sharded or not) and the tokenizer "
                    "files. The result is a run folder that generate, eval and look use. Nothing is downloaded.",
    )
    p.add_argument("path", type=Path, help="the Hugging Face model folder")
    p.add_argument("--out", type=Path, required=True, help="the run folder to write (must not hold a run)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = import_hf(args.path, args.out)
    params = result.config.model.num_parameters()
    print(f"imported {result.architecture} ({params:,} parameters) into {result.path}: "
          f"try `glassgpt generate --model {result.path} \"Hello\"`")
    return 0
