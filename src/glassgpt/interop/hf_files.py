"""Reading a Hugging Face model folder as `transformers`' `save_pretrained` writes it.

  config.json                         the architecture and its settings (`HFConfig`)
  model.safetensors                   the weights; or `pytorch_model.bin` (a torch pickle,
  model-0000N-of-0000M.safetensors    read with `weights_only=True`, so only tensors load);
  model.safetensors.index.json        either may be sharded, with an index naming the shards
  tokenizer.json                      the tokenizer; or GPT-2's vocab.json + merges.txt

Every problem is a one-line `GlassError` naming the file and the fix. Nothing is downloaded.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from glassgpt.errors import GlassError
from glassgpt.tokenizer import Tokenizer

CONFIG = "config.json"
# The weight files `save_pretrained` writes, in the order they are looked for.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_REQUIRED = object()


class HFConfig:
    """A `config.json`'s fields, read with a one-line error for a missing or mistyped one."""

    def __init__(self, raw: dict[str, Any], source: str) -> None:
        self.raw = raw
        self.source = source

    @property
    def architecture(self) -> str:
        """The model class that wrote it (`architectures[0]`), else its `model_type`."""
        names = self.raw.get("architectures") or []
        if isinstance(names, list) and names and isinstance(names[0], str):
            return names[0]
        return f"model_type {self.raw.get('model_type', 'unknown')!r}"

    def get(self, name: str, kind: type, default: Any = _REQUIRED) -> Any:
        value = self.raw.get(name)
        if value is None:
            if default is _REQUIRED:
                raise GlassError(f"{self.source} has no {name!r}: it is not a complete transformers config")
            return default
        # bool is an int in Python, and an int is a fine float.
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise GlassError(f"{self.source}: {name!r} should be a {kind.__name__}, got {value!r}")
        return value


def read_config(folder: Path) -> HFConfig:
    """The folder's config.json."""
    if not folder.is_dir():
        raise GlassError(f"no such folder: {folder} (give the folder that save_pretrained wrote)")
    path = folder / CONFIG
    if not path.is_file():
        raise GlassError(f"{folder} has no {CONFIG}: give a folder written by transformers' save_pretrained "
                         "(config.json with model.safetensors or pytorch_model.bin)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GlassError(f"{path} is not valid JSON ({err}): download or save it again") from None
    if not isinstance(raw, dict):
        raise GlassError(f"{path} is not a transformers config (not a JSON object)")
    return HFConfig(raw, str(path))


def read_weights(folder: Path) -> tuple[dict[str, torch.Tensor], str]:
    """All tensors of the folder's weight files (shards joined), and a name for them in errors."""
    found = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if found is None:
        raise GlassError(f"{folder} has no weights ({', '.join(WEIGHT_FILES)}): save the model into it with "
                         "save_pretrained, or download its weight files too")
    if not found.name.endswith(".index.json"):
        return _read_weight_file(found), str(found)
    try:
        weight_map = json.loads(found.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise GlassError(f"{found} is not a shard index ({err}): download or save it again") from None
    tensors: dict[str, torch.Tensor] = {}
    for shard in shards:
        path = (folder / shard).resolve()
        if path.parent != folder.resolve():  # an index may only name files beside it
            raise GlassError(f"{found} names a shard outside its folder ({shard!r}): refusing to read it")
        if not path.is_file():
            raise GlassError(f"{found} names {shard}, which is missing: download or save all the shards")
        tensors.update(_read_weight_file(path))
    return tensors, f"the weights in {folder} ({len(shards)} shards)"


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise GlassError(f"{path} is corrupted ({err}): download or save it again") from None
    try:
        # weights_only: tensors and plain containers only; anything else (code) is refused unrun.
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise GlassError(f"{path} needs more than tensors to load ({first[:160]}): glassgpt only reads plain "
                         "tensors; re-save the model with save_pretrained (safetensors) where you trust it") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise GlassError(f"{path} is not a readable PyTorch weight file ({err}): download or save it again") from None
    if not isinstance(loaded, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in loaded.items()):
        raise GlassError(f"{path} is not a state dict (names to tensors): save the model with save_pretrained")
    return loaded


def read_tokenizer(folder: Path) -> Tokenizer:
    """The folder's tokenizer: tokenizer.json, else GPT-2's vocab.json and merges.txt."""
    if (folder / "tokenizer.json").is_file():
        return Tokenizer.load(folder / "tokenizer.json")
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return Tokenizer.from_vocab_merges(folder / "vocab.json", folder / "merges.txt")
    raise GlassError(f"{folder} has no tokenizer (tokenizer.json, or vocab.json + merges.txt): save it there too "
                     "with the tokenizer's save_pretrained")
