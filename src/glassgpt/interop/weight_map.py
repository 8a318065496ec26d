"""Named weight maps between glassgpt's modules and a Hugging Face family's, used both ways.

Each family (`hf_llama`, `hf_gpt2`) writes one table of `Link`s: which of our modules holds
which of theirs. Our model fuses some matrices that they keep apart (q, k and v in one
projection; Llama's gate and up in another): one link then names several of theirs, stacked
along the output dimension in that order. GPT-2's `Conv1D` layers store their weight as
(in, out), the transpose of `nn.Linear`'s. Nothing else differs: the math is the same.

`to_ours` reads their tensors into our names and checks every shape against our config, with
one-line errors naming the tensor; `to_theirs` goes back. A link covers a module's `weight`
and, where the module has one, its `bias`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from glassgpt.errors import GlassError


@dataclass(frozen=True)
class Link:
    """Our module `ours` holds their module(s) `theirs`, stacked along dim 0 in `rows` rows each."""

    ours: str  # e.g. "blocks.0.attn.qkv"
    theirs: tuple[str, ...]  # e.g. ("model.layers.0.self_attn.q_proj", ...k_proj, ...v_proj)
    rows: tuple[int, ...] = ()  # output rows of each of theirs; needed when there are several
    transposed: bool = False  # GPT-2's Conv1D: their weight is (in, out)

    def __post_init__(self) -> None:
        if len(self.theirs) > 1 and len(self.rows) != len(self.theirs):
            raise ValueError(f"link {self.ours}: give the rows of each of {self.theirs}")


def _module_and_param(name: str) -> tuple[str, str]:
    module, _, param = name.rpartition(".")
    return module, param


def _their_shape(link: Link, index: int, param: str, our_shape: torch.Size) -> tuple[int, ...]:
    """The shape their tensor `link.theirs[index]`.`param` must have for our `our_shape`."""
    rows = link.rows[index] if link.rows else our_shape[0]
    shape = (rows, *our_shape[1:])
    return tuple(reversed(shape)) if link.transposed and param == "weight" else shape


def to_ours(links: Sequence[Link], their_state: Mapping[str, torch.Tensor], our_shapes: Mapping[str, torch.Size],
            source: str, ignored: re.Pattern[str] | None = None) -> dict[str, torch.Tensor]:
    """Our state dict (names and shapes `our_shapes`) from their tensors.

    Every one of our tensors must be found with the right shape, and every one of theirs used,
    except names matching `ignored` (buffers old checkpoints saved, a tied output copy).
    """
    by_module = {link.ours: link for link in links}
    ours: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for name, shape in our_shapes.items():
        module, param = _module_and_param(name)
        link = by_module.get(module)
        if link is None:
            raise ValueError(f"the weight map has no link for {name}")  # a bug in the map, not bad input
        parts = []
        for index, theirs in enumerate(link.theirs):
            key = f"{theirs}.{param}"
            if key not in their_state:
                raise GlassError(f"{source} has no tensor {key} (needed for {name}): "
                                 "the weights do not match config.json, or the files are incomplete")
            tensor = their_state[key]
            expected = _their_shape(link, index, param, shape)
            if tuple(tensor.shape) != expected:
                raise GlassError(f"{source}: tensor {key} has shape {tuple(tensor.shape)}, but config.json "
                                 f"implies {expected}: the weights and config.json are from different models")
            used.add(key)
            parts.append(tensor.t() if link.transposed and param == "weight" else tensor)
        ours[name] = (parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)).contiguous()
    unknown = sorted(k for k in their_state if k not in used and not (ignored and ignored.fullmatch(k)))
    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise GlassError(f"{source} has tensors that config.json does not account for ({', '.join(unknown[:3])}{more}): "
                         "the weights and config.json are from different models")
    return ours


def to_theirs(links: Sequence[Link], our_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Their state dict from ours (every one of our tensors must have a link)."""
    by_module = {link.ours: link for link in links}
    theirs: dict[str, torch.Tensor] = {}
    for name, tensor in our_state.items():
        module, param = _module_and_param(name)
        link = by_module[module]
        parts = tensor.split(list(link.rows), dim=0) if len(link.theirs) > 1 else (tensor,)
        for their_module, part in zip(link.theirs, parts, strict=True):
            part = part.t() if link.transposed and param == "weight" else part
            theirs[f"{their_module}.{param}"] = part.contiguous()
    return theirs
