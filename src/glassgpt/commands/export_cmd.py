"""`glassgpt export-hf`: a run folder as a Hugging Face `transformers` model folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from glassgpt.commands.common import add_model_option, model_path
from glassgpt.interop.hf_llama import export_run


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export-hf", help="write a model as a Hugging Face Llama folder (from_pretrained loads it)",
        description="Export a run as config.json + model.safetensors + tokenizer files that "
                    "transformers' LlamaForCausalLM and PreTrainedTokenizerFast load with from_pretrained.",
    )
    add_model_option(p)
    p.add_argument("--out", type=Path, required=True, help="folder to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = export_run(model_path(args), args.out)
    print(f"wrote {out}: load it with transformers.LlamaForCausalLM.from_pretrained({str(out)!r})")
    return 0
