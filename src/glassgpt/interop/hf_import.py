"""Import a Hugging Face GPT-2 or Llama folder as an ordinary glassgpt run folder.

The folder's `config.json` names the architecture; its family (`hf_gpt2`, `hf_llama`) turns the
config into our `ModelConfig` and names, in one weight map, which of its tensors each of our
weights is. The result is a run folder (stage "import", parent = the source folder) that
generate, eval and look use like any trained run. The weights keep their dtype on disk
(loading casts them to the model's); the tokenizer comes from the same folder.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from glassgpt.config import ModelConfig, RunConfig, TokenizerConfig
from glassgpt.errors import GlassError
from glassgpt.interop import hf_gpt2, hf_llama
from glassgpt.interop.hf_files import HFConfig, read_config, read_tokenizer, read_weights
from glassgpt.interop.weight_map import Link, to_ours
from glassgpt.model import GPT
from glassgpt.runs import RunFolder


@dataclass(frozen=True)
class Family:
    """What importing one `transformers` architecture takes."""

    architecture: str  # the class name in config.json's "architectures"
    model_type: str  # config.json's "model_type", for configs saved without "architectures"
    model_config: Callable[[HFConfig], ModelConfig]
    links: Callable[[ModelConfig], list[Link]]
    ignored: re.Pattern[str]  # their tensors that are not weights
    rename: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] = lambda state: state


FAMILIES = {family.architecture: family for family in (
    Family(hf_gpt2.ARCHITECTURE, "gpt2", hf_gpt2.model_config_from_gpt2, hf_gpt2.gpt2_links, hf_gpt2.IGNORED,
           hf_gpt2.with_prefix),
    Family(hf_llama.ARCHITECTURE, "llama", hf_llama.model_config_from_llama, hf_llama.llama_links, hf_llama.IGNORED),
)}


@dataclass(frozen=True)
class ImportResult:
    path: Path
    architecture: str
    config: RunConfig


def family_of(hf: HFConfig) -> Family:
    """The family that imports this config, or a one-line error naming what it is."""
    family = FAMILIES.get(hf.architecture)
    if family is None and not hf.raw.get("architectures"):
        family = next((f for f in FAMILIES.values() if f.model_type == hf.raw.get("model_type")), None)
    if family is None:
        raise GlassError(f"{hf.source} is a {hf.architecture}, which glassgpt cannot import: "
                         f"it imports {' and '.join(FAMILIES)}")
    return family


def convert(hf: HFConfig, their_state: dict[str, torch.Tensor],
            where: str = "the weights") -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Our model config and state dict (for `GPT.load_state_dict`) from a `transformers` config
    and state dict, of a model in memory (`hf_model.state_dict()`) or read from files."""
    family = family_of(hf)
    model_config = family.model_config(hf)
    with torch.device("meta"):  # shapes only: no memory, no initialisation work
        shapes = {name: p.shape for name, p in GPT(model_config).state_dict().items()}
    ignored = family.ignored.pattern
    if model_config.tie_embeddings:
        shapes.pop("lm_head.weight")  # it is the token embedding
        ignored += r"|lm_head\.weight"  # a copy some checkpoints keep
    weights = to_ours(family.links(model_config), family.rename(their_state), shapes, where, re.compile(ignored))
    return model_config, weights


def import_hf(source: str | Path, out: str | Path) -> ImportResult:
    """Write the Hugging Face model folder `source` as a new run folder `out`.

    `out` must not hold a run already (nothing saved is ever overwritten); config.json is written
    last, so an interrupted import leaves no folder that looks like a run.
    """
    source, target = Path(source), RunFolder(out)
    hf = read_config(source)
    family = family_of(hf)
    if target.is_run():
        raise GlassError(f"{target.path} already holds a run: choose a new --out folder (nothing was changed)")
    model_config = family.model_config(hf)  # config errors before reading gigabytes of weights
    tokenizer = read_tokenizer(source)
    if tokenizer.vocab_size != model_config.vocab_size:
        raise GlassError(f"the tokenizer in {source} has {tokenizer.vocab_size} tokens but the model has "
                         f"{model_config.vocab_size}: glassgpt needs them equal (was a tokenizer from another "
                         "model saved there?)")
    model_config, weights = convert(hf, *read_weights(source))
    config = RunConfig(model=model_config, tokenizer=TokenizerConfig(tokenizer.kind, tokenizer.vocab_size),
                       stage="import", parent=str(source.resolve()))
    target.prepare()
    target.save_weights(weights, step=0)
    target.save_tokenizer(tokenizer)
    target.save_config(config)
    return ImportResult(target.path, family.architecture, config)
