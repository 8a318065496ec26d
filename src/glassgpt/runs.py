"""Run folders: saving and loading a model, its tokenizer, its config and the trainer's state.

A run folder holds
  config.json                 the RunConfig (model shape, tokenizer, training recipe)
  model.safetensors           the weights (what `generate`, `eval` and `look` need)
  tokenizer.json              the tokenizer, in Hugging Face's standard format
  trainer_state.safetensors   optimizer moments, RNG states, step: what `--resume` needs
  metrics.jsonl, loss_curve.png, report.md    written by training

Every file is written atomically (see `glassgpt.atomic`), so a `kill -9` at any moment leaves
files that load. The trainer state carries its own copy of the weights, so resuming always
pairs weights and optimizer moments of the same step even if the process died between two
renames. Nothing is ever unpickled: tensors are safetensors, the rest is JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from glassgpt.atomic import atomic_write, atomic_write_text
from glassgpt.config import RunConfig
from glassgpt.errors import GlassError
from glassgpt.model import GPT
from glassgpt.tokenizer import Tokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
STATE_FILE = "trainer_state.safetensors"
METRICS_FILE = "metrics.jsonl"


@dataclass
class LoadedRun:
    """A model ready to use, with the tokenizer and config it was trained with."""

    model: GPT
    tokenizer: Tokenizer
    config: RunConfig
    step: int
    path: Path


@dataclass
class TrainerState:
    """Where training stands: enough to continue exactly where it stopped."""

    step: int = 0
    tokens_seen: int = 0
    elapsed_s: float = 0.0  # training time so far (drives a time-budgeted LR schedule)
    torch_rng: torch.Tensor | None = None
    data_rng: torch.Tensor | None = None  # the generator that picks training windows


def _weights_for_saving(model: GPT) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    if model.config.tie_embeddings:
        state.pop("lm_head.weight")  # the same tensor as embed.weight; safetensors refuses aliases
    return {name: t.detach().contiguous().cpu() for name, t in state.items()}


def _load_weights(model: GPT, weights: dict[str, torch.Tensor], source: Path) -> None:
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise GlassError(f"{source} does not match its config.json ({first}): was it copied from another run?") from None
    if model.config.tie_embeddings:
        missing = [m for m in missing if m != "lm_head.weight"]
    if missing or unexpected:
        raise GlassError(
            f"{source} does not match its config.json (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise GlassError(f"{path} is missing: the run folder is incomplete (train again or restore it)")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise GlassError(f"{path} is corrupted ({err}): restore it or train again") from None


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(path, framework="pt") as f:
        return f.metadata() or {}


def save_config(run_dir: Path, config: RunConfig) -> None:
    atomic_write_text(run_dir / CONFIG_FILE, json.dumps(config.to_dict(), indent=2) + "\n")


def load_config(run_dir: str | Path) -> RunConfig:
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise GlassError(f"no such run folder: {run_dir} (train one with `glassgpt train --out {run_dir}`)")
    if not path.is_file():
        raise GlassError(
            f"{run_dir} is not a glassgpt run folder (no {CONFIG_FILE}): "
            f"train one with `glassgpt train --out {run_dir}`"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GlassError(f"{path} is corrupted ({err}): restore it or train again") from None
    if not isinstance(raw, dict):
        raise GlassError(f"{path} is not a glassgpt config: restore it or train again")
    return RunConfig.from_dict(raw)


def save_weights(run_dir: Path, model: GPT, step: int) -> None:
    weights = _weights_for_saving(model)
    atomic_write(run_dir / WEIGHTS_FILE, lambda tmp: save_file(weights, tmp, metadata={"step": str(step)}))


def save_trainer_state(run_dir: Path, model: GPT, optimizer: torch.optim.Optimizer, state: TrainerState) -> None:
    """Optimizer moments + weights + RNG states in one safetensors file; scalars in its metadata."""
    tensors = {f"model.{k}": v for k, v in _weights_for_saving(model).items()}
    opt_state = optimizer.state_dict()
    for index, slots in opt_state["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    if state.torch_rng is not None:
        tensors["rng.torch"] = state.torch_rng
    if state.data_rng is not None:
        tensors["rng.data"] = state.data_rng
    meta = {
        "step": state.step,
        "tokens_seen": state.tokens_seen,
        "elapsed_s": state.elapsed_s,
        "param_groups": opt_state["param_groups"],
    }
    atomic_write(run_dir / STATE_FILE, lambda tmp: save_file(tensors, tmp, metadata={"json": json.dumps(meta)}))


def load_trainer_state(run_dir: Path, model: GPT, optimizer: torch.optim.Optimizer) -> TrainerState:
    """Restore weights and optimizer from the trainer state; return the step and RNG states."""
    path = run_dir / STATE_FILE
    tensors = _read_safetensors(path)
    try:
        meta = json.loads(_metadata(path)["json"])
    except (KeyError, ValueError) as err:
        raise GlassError(f"{path} is corrupted ({err}): restore it or train again without --resume") from None

    _load_weights(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            slots.setdefault(int(index), {})[key] = value
    try:
        optimizer.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError, RuntimeError) as err:
        raise GlassError(f"{path} does not match this model's optimizer ({err}): train again without --resume") from None
    return TrainerState(
        step=int(meta["step"]),
        tokens_seen=int(meta["tokens_seen"]),
        elapsed_s=float(meta["elapsed_s"]),
        torch_rng=tensors.get("rng.torch"),
        data_rng=tensors.get("rng.data"),
    )


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Load the model (eval mode), tokenizer and config of a run folder, with clear errors."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    tokenizer_path = run_dir / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        raise GlassError(f"{tokenizer_path} is missing: the run folder is incomplete (train again)")
    tokenizer = Tokenizer.load(tokenizer_path)
    if tokenizer.vocab_size != config.model.vocab_size:
        raise GlassError(
            f"{tokenizer_path} has {tokenizer.vocab_size} tokens but the model expects "
            f"{config.model.vocab_size}: the files come from different runs"
        )
    weights_path = run_dir / WEIGHTS_FILE
    weights = _read_safetensors(weights_path)
    model = GPT(config.model)
    _load_weights(model, weights, weights_path)
    step = int(_metadata(weights_path).get("step", 0))
    return LoadedRun(model.to(device).eval(), tokenizer, config, step, run_dir)
