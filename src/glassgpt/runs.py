"""Run folders: every file a run keeps, and every read and write of them, in one class.

A run folder holds
  config.json                 the RunConfig: model shape, tokenizer, training recipe, and its
                              lineage (`stage`: pretrain / sft / rl / import; `parent`: the run
                              it started from) under a `format_version`
  model.safetensors           the weights (what `generate`, `eval` and `look` need)
  tokenizer.json              the tokenizer, in Hugging Face's standard format
  trainer_state.safetensors   optimizer moments, RNG states, step: what `--resume` needs
  metrics.jsonl               one JSON record per logged step
  loss_curve.png, report.md   pictures and reports drawn from the above (RL: rl_curves.png)

Callers never build these file names: they ask a `RunFolder`. Saving takes plain state dicts
(a sharded model gathers its weights first, see `glassgpt.runtime.full_state_dict`).

Every file is written atomically (temp file + fsync + rename, `glassgpt.atomic`), so a
`kill -9` at any moment leaves files that load. The trainer state carries its own copy of the
weights, so resuming always pairs weights and optimizer moments of the same step even if the
process died between two renames. `metrics.jsonl` is appended one whole line at a time; a
line cut short by a kill is skipped when read, and resuming rewrites the file (atomically)
without the steps the checkpoint does not contain. Nothing is ever unpickled: tensors are
safetensors, the rest is JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from glassgpt.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from glassgpt.config import RunConfig
from glassgpt.errors import GlassError
from glassgpt.model import GPT
from glassgpt.tokenizer import Tokenizer


@dataclass
class TrainerState:
    """Where training stands: enough to continue exactly where it stopped."""

    step: int = 0
    tokens_seen: int = 0
    elapsed_s: float = 0.0  # training time so far (drives a time-budgeted LR schedule)
    torch_rng: torch.Tensor | None = None
    data_rng: torch.Tensor | None = None  # the generator that picks training windows


@dataclass
class SavedTraining:
    """What `RunFolder.load_trainer_state` returns: weights, optimizer state, and the counters."""

    weights: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    state: TrainerState


@dataclass
class LoadedRun:
    """A model ready to use, with the tokenizer and config it was trained with."""

    model: GPT
    tokenizer: Tokenizer
    config: RunConfig
    step: int
    path: Path


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSON-lines file; a last line cut short (a kill mid-append) is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class RunFolder:
    """One run folder on disk (it need not exist yet)."""

    CONFIG = "config.json"
    WEIGHTS = "model.safetensors"
    TOKENIZER = "tokenizer.json"
    TRAINER_STATE = "trainer_state.safetensors"
    METRICS = "metrics.jsonl"
    LOSS_CURVE = "loss_curve.png"
    RL_CURVES = "rl_curves.png"
    REPORT = "report.md"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.config_path = self.path / self.CONFIG
        self.weights_path = self.path / self.WEIGHTS
        self.tokenizer_path = self.path / self.TOKENIZER
        self.trainer_state_path = self.path / self.TRAINER_STATE
        self.metrics_path = self.path / self.METRICS
        self.loss_curve_path = self.path / self.LOSS_CURVE
        self.rl_curves_path = self.path / self.RL_CURVES
        self.report_path = self.path / self.REPORT

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def is_run(self) -> bool:
        """Does this folder hold a run (its config)?"""
        return self.config_path.is_file()

    def has_trainer_state(self) -> bool:
        return self.trainer_state_path.is_file()

    def has_weights(self) -> bool:
        return self.weights_path.is_file()

    def prepare(self) -> None:
        """Make the folder and remove half-written temp files left by a killed process."""
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in self.path.glob(".*.tmp"):
            stale.unlink(missing_ok=True)

    # ------------------------------------------------------------------ config and tokenizer

    def save_config(self, config: RunConfig) -> None:
        atomic_write_text(self.config_path, json.dumps(config.to_dict(), indent=2) + "\n")

    def load_config(self) -> RunConfig:
        if not self.path.is_dir():
            raise GlassError(f"no such run folder: {self.path} (train one with `glassgpt train --out {self.path}`)")
        if not self.is_run():
            raise GlassError(
                f"{self.path} is not a glassgpt run folder (no {self.CONFIG}): "
                f"train one with `glassgpt train --out {self.path}`"
            )
        try:
            raw = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise GlassError(f"{self.config_path} is corrupted ({err}): restore it or train again") from None
        if not isinstance(raw, dict):
            raise GlassError(f"{self.config_path} is not a glassgpt config: restore it or train again")
        return RunConfig.from_dict(raw)

    def save_tokenizer(self, tokenizer: Tokenizer) -> None:
        tokenizer.save(self.tokenizer_path)

    def load_tokenizer(self) -> Tokenizer:
        if not self.tokenizer_path.is_file():
            raise GlassError(f"{self.tokenizer_path} is missing: the run folder is incomplete (train again)")
        return Tokenizer.load(self.tokenizer_path)

    # ------------------------------------------------------------------ weights

    def save_weights(self, weights: Mapping[str, torch.Tensor], step: int) -> None:
        tensors = _storable(weights)
        atomic_write(self.weights_path, lambda tmp: save_file(tensors, tmp, metadata={"step": str(step)}))

    def load_weights(self) -> tuple[dict[str, torch.Tensor], int]:
        """The saved weights and the step they are from."""
        weights = _read_safetensors(self.weights_path)
        return weights, int(_metadata(self.weights_path).get("step", 0))

    def load(self, device: str | torch.device = "cpu") -> LoadedRun:
        """The model (in eval mode), tokenizer and config, with clear errors for broken folders."""
        config = self.load_config()
        tokenizer = self.load_tokenizer()
        if tokenizer.vocab_size != config.model.vocab_size:
            raise GlassError(
                f"{self.tokenizer_path} has {tokenizer.vocab_size} tokens but the model expects "
                f"{config.model.vocab_size}: the files come from different runs"
            )
        weights, step = self.load_weights()
        model = GPT(config.model)
        load_weights_into(model, weights, self.weights_path)
        return LoadedRun(model.to(device).eval(), tokenizer, config, step, self.path)

    def copy_for_inference(self, dest: str | os.PathLike[str], dtype: torch.dtype | None = None) -> RunFolder:
        """A copy that generates, evaluates and looks, without the trainer state (optimizer
        moments: twice the weights), its weights cast to `dtype` (bf16 halves them; loading
        casts back to the model's float32). Config, tokenizer, metrics and curve come along."""
        target = RunFolder(dest)
        target.prepare()
        weights, step = self.load_weights()
        if dtype is not None:
            weights = {name: t.to(dtype) for name, t in weights.items()}
        target.save_weights(weights, step)
        for name in (self.CONFIG, self.TOKENIZER, self.METRICS, self.LOSS_CURVE):
            if (self.path / name).is_file():
                atomic_write_bytes(target.path / name, (self.path / name).read_bytes())
        return target

    # ------------------------------------------------------------------ trainer state

    def save_trainer_state(self, weights: Mapping[str, torch.Tensor], optimizer_state: Mapping[str, Any],
                           state: TrainerState) -> None:
        """Weights + optimizer moments + RNG states in one safetensors file; scalars as JSON metadata."""
        tensors = {f"model.{k}": v for k, v in _storable(weights).items()}
        for key, slots in optimizer_state["state"].items():
            for slot, value in slots.items():
                # "/" separates the parts: parameter keys may be FQNs with dots (sharded models).
                tensors[f"optim/{key}/{slot}"] = torch.as_tensor(value).detach().cpu().contiguous()
        if state.torch_rng is not None:
            tensors["rng.torch"] = state.torch_rng
        if state.data_rng is not None:
            tensors["rng.data"] = state.data_rng
        meta = {
            "step": state.step,
            "tokens_seen": state.tokens_seen,
            "elapsed_s": state.elapsed_s,
            "param_groups": optimizer_state["param_groups"],
            "optimizer_keys": [[type(k).__name__, str(k)] for k in optimizer_state["state"]],
        }
        atomic_write(self.trainer_state_path,
                     lambda tmp: save_file(tensors, tmp, metadata={"json": json.dumps(meta)}))

    def load_trainer_state(self) -> SavedTraining:
        path = self.trainer_state_path
        tensors = _read_safetensors(path)
        try:
            meta = json.loads(_metadata(path)["json"])
            keys = {text: (int(text) if kind == "int" else text) for kind, text in meta["optimizer_keys"]}
            slots: dict[Any, dict[str, torch.Tensor]] = {key: {} for key in keys.values()}
            for name, value in tensors.items():
                if name.startswith("optim/"):
                    _, key, slot = name.split("/", 2)
                    slots[keys[key]][slot] = value
            state = TrainerState(
                step=int(meta["step"]),
                tokens_seen=int(meta["tokens_seen"]),
                elapsed_s=float(meta["elapsed_s"]),
                torch_rng=tensors.get("rng.torch"),
                data_rng=tensors.get("rng.data"),
            )
            optimizer_state = {"state": slots, "param_groups": meta["param_groups"]}
        except (KeyError, ValueError, TypeError) as err:
            raise GlassError(f"{path} is corrupted ({err}): restore it or train again without --resume") from None
        weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        return SavedTraining(weights, optimizer_state, state)

    # ------------------------------------------------------------------ metrics and reports

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        """One whole line per call, flushed to disk (a kill can cut at most this line short)."""
        line = json.dumps(record) + "\n"
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_path)

    def keep_metrics_until(self, step: int) -> None:
        """On resume: drop records of steps the checkpoint does not contain (atomic rewrite)."""
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def clear_metrics(self) -> None:
        self.metrics_path.unlink(missing_ok=True)

    def write_report(self, text: str) -> Path:
        atomic_write_text(self.report_path, text)
        return self.report_path


SHIPPED_MODEL = "model"  # the trained base model that ships inside the package: assets/model/
SHIPPED_CHAT_MODEL = "chat-model"  # the chat model (SFT + RL of the base) that ships with it: assets/chat-model/


def shipped_model(name: str = SHIPPED_MODEL) -> Path | None:
    """The run folder of a model that ships with glassgpt (`name`: SHIPPED_MODEL or
    SHIPPED_CHAT_MODEL), if this install has it."""
    from glassgpt.assets import asset

    folder = Path(str(asset(name)))
    return folder if RunFolder(folder).is_run() else None


def default_model(own_dir: Path, shipped: str = SHIPPED_MODEL) -> Path | None:
    """The model a command uses when none is named: the user's own run at `own_dir` if there is
    one (it is theirs, and newest), else the shipped model `shipped`."""
    return own_dir if RunFolder(own_dir).is_run() else shipped_model(shipped)


def load_run(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedRun:
    """The model (eval mode), tokenizer and config of the run folder at `path`."""
    return RunFolder(path).load(device)


def load_weights_into(model: GPT, weights: Mapping[str, torch.Tensor], source: Path) -> None:
    """Copy saved weights into `model`, naming the file when they do not fit its config."""
    try:
        missing, unexpected = model.load_state_dict(dict(weights), strict=False)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise GlassError(f"{source} does not match its config.json ({first}): was it copied from another run?") from None
    if model.config.tie_embeddings:
        missing = [m for m in missing if m != "lm_head.weight"]
    if missing or unexpected:
        raise GlassError(
            f"{source} does not match its config.json (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def _storable(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors; a tied output layer is dropped (safetensors refuses aliases)."""
    tensors = {name: t.detach().contiguous().cpu() for name, t in weights.items()}
    head, embed = tensors.get("lm_head.weight"), tensors.get("embed.weight")
    # Tied weights arrive as one tensor, or (gathered from shards) as two equal copies.
    if head is not None and embed is not None and (
            head.data_ptr() == embed.data_ptr() or (head.shape == embed.shape and torch.equal(head, embed))):
        tensors.pop("lm_head.weight")
    return tensors


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
