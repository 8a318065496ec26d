"""Options and lookups shared by several subcommands (model folder, cache folder, device, int8)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from glassgpt.entry import cache_root
from glassgpt.errors import GlassError
from glassgpt.runs import default_model, shipped_model
from glassgpt.runtime import Distributed, resolve_device

DEFAULT_RUN = Path("runs/demo")


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None,
                        help=f"run folder of a trained model (default: {DEFAULT_RUN} made by `glassgpt demo`, "
                             "else the model that ships with glassgpt)")


def add_base_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None,
                        help="run folder of the base model to chat-tune (default: the base model that ships with "
                             "glassgpt; the chat recipe is tuned on it, and the demo model is too small for it)")


def base_model_path(args: argparse.Namespace) -> Path:
    """The --model folder, else the shipped base model (never `runs/demo`: the chat stages'
    defaults reproduce the pipeline on the shipped base, as the README's tables were measured)."""
    if args.model is not None:
        return args.model
    found = shipped_model()
    if found is None:
        raise GlassError("no --model given and no base model shipped with this install: pass --model RUN "
                         "(a run of `glassgpt train` or `glassgpt demo`)")
    return found


def model_path(args: argparse.Namespace) -> Path:
    """The --model folder, else the demo's, else the shipped model, with a clear hint when none exists."""
    if args.model is not None:
        return args.model
    found = default_model(DEFAULT_RUN)
    if found is None:
        raise GlassError(f"no --model given, no demo model at {DEFAULT_RUN} and no model shipped with this install: "
                         "run `glassgpt demo` first or pass --model RUN")
    return found


def cache_dir() -> Path:
    """Where tokenized corpora are cached: tokens/ in glassgpt's cache folder (`entry.cache_root`)."""
    return cache_root(os.environ) / "tokens"


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda if present)")


def device(args: argparse.Namespace) -> torch.device:
    return resolve_device(args.device)


def distributed_from_env() -> Distributed:
    """This process's place among those torchrun started (one process when not under torchrun)."""
    return Distributed.from_env(os.environ)


def add_quantize_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quantize", choices=["int8"], help="run the linear layers with int8 weights (CPU): "
                        "faster decoding, the saved model is unchanged")


def for_decoding(model: torch.nn.Module, args: argparse.Namespace) -> torch.nn.Module:
    """`model`, quantized in place when --quantize asks for it (see `glassgpt.quantize`)."""
    if args.quantize != "int8":
        return model
    from glassgpt.quantize import quantize_for_decoding

    return quantize_for_decoding(model, log=lambda message: print(message, file=sys.stderr))


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value
