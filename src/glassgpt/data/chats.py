"""Conversations for chat tuning: reading them from JSONL, and packing them into training batches.

The file format is OpenAI's: one conversation per line, ``{"messages": [{"role": "user",
"content": ...}, {"role": "assistant", "content": ...}]}`` (an optional system message first).
Every problem in a file is reported with its line number.

Training rows are made of whole rendered conversations (`glassgpt.chat_template`), packed one
after another into a row of `context + 1` tokens and padded at the end. A conversation longer
than the context is cut to it. The target of a position is the next token where the template's
mask says the model should learn it (the assistant's text and its end token) and -1 (ignored by
the loss) everywhere else: the user's words, the system text, the padding. Each conversation
starts with `<|bos|>`, so the model can tell where a new one begins.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from glassgpt.chat_template import render_conversation, validate_conversation
from glassgpt.data.batches import Batch
from glassgpt.errors import GlassError
from glassgpt.tokenizer import Tokenizer

IGNORE = -1  # the target of a position the loss skips (see `glassgpt.model.GPT.forward`)


@dataclass(frozen=True)
class RenderedChat:
    """One conversation as token ids and its training mask (1 = learn this token)."""

    ids: list[int]
    mask: list[int]


def read_conversations(path: str | Path) -> list[list[dict[str, str]]]:
    """The conversations of a JSONL file; a GlassError names the first bad line and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise GlassError(f"no such file: {path} (give a .jsonl file with one {{\"messages\": [...]}} per line)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise GlassError(f"{path} is not UTF-8 (bad byte at offset {err.start}): save it as UTF-8") from None
    conversations = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        conversations.append(parse_line(line, f"{path} line {number}"))
    if not conversations:
        raise GlassError(f"{path} has no conversations: put one {{\"messages\": [...]}} object on each line")
    return conversations


def parse_line(line: str, where: str) -> list[dict[str, str]]:
    """One JSONL line as a checked conversation ending with the assistant; errors start with `where`."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise GlassError(f"{where} is not valid JSON ({err.msg} at column {err.colno}): "
                         "each line must be one JSON object") from None
    if not isinstance(record, dict) or "messages" not in record:
        raise GlassError(f"{where} needs a \"messages\" list: {{\"messages\": [{{\"role\": \"user\", "
                         "\"content\": ...}, {\"role\": \"assistant\", \"content\": ...}]}")
    try:
        return validate_conversation(record["messages"], ends_with="assistant")
    except GlassError as err:
        raise GlassError(f"{where}: {err}") from None


def render_all(tokenizer: Tokenizer, conversations: Iterable[Sequence[dict[str, str]]]) -> list[RenderedChat]:
    """Each conversation through the chat template."""
    return [RenderedChat(*render_conversation(tokenizer, messages)) for messages in conversations]


def pack_rows(chats: Sequence[RenderedChat], context: int, pad_id: int) -> tuple[list[list[int]], list[list[int]]]:
    """Conversations laid one after another into rows of `context + 1` ids (each cut to that
    length), a new row started when the next one does not fit; returns (ids, mask) rows, padded."""
    rows_ids: list[list[int]] = []
    rows_mask: list[list[int]] = []
    ids: list[int] = []
    mask: list[int] = []
    for chat in chats:
        length = min(len(chat.ids), context + 1)
        if ids and len(ids) + length > context + 1:
            rows_ids.append(ids)
            rows_mask.append(mask)
            ids, mask = [], []
        ids += chat.ids[:length]
        mask += chat.mask[:length]
    if ids:
        rows_ids.append(ids)
        rows_mask.append(mask)
    for row_ids, row_mask in zip(rows_ids, rows_mask, strict=True):
        row_mask += [0] * (context + 1 - len(row_ids))
        row_ids += [pad_id] * (context + 1 - len(row_ids))
    return rows_ids, rows_mask


def rows_to_batch(rows_ids: list[list[int]], rows_mask: list[list[int]],
                  device: torch.device | str = "cpu") -> Batch:
    """Rows of `context + 1` ids -> inputs x (B, T) and targets y (B, T), -1 where not trained."""
    ids = torch.tensor(rows_ids, dtype=torch.int64)
    mask = torch.tensor(rows_mask, dtype=torch.bool)
    targets = torch.where(mask[:, 1:], ids[:, 1:], IGNORE)
    return ids[:, :-1].to(device), targets.to(device)


def fixed_batches(chats: Sequence[RenderedChat], context: int, pad_id: int, batch_size: int,
                  device: torch.device | str = "cpu") -> list[Batch]:
    """All of `chats`, in order, packed into batches: the same every time (for evaluation)."""
    rows_ids, rows_mask = pack_rows(chats, context, pad_id)
    return [rows_to_batch(rows_ids[i:i + batch_size], rows_mask[i:i + batch_size], device)
            for i in range(0, len(rows_ids), batch_size)]


class ChatBatches:
    """Random packed rows of conversations for each training step.

    Each row takes conversations drawn at random (with replacement) from one generator while they
    fit; the generator's state is all a checkpoint needs to continue the same sequence.
    """

    DRAWS_PER_ROW = 64  # candidates drawn per row; those that do not fit are skipped

    def __init__(self, chats: Sequence[RenderedChat], context: int, batch_size: int, grad_accum: int = 1, *,
                 pad_id: int, seed: int, device: torch.device | str = "cpu") -> None:
        if not chats:
            raise GlassError("no conversations to train on")
        self.chats, self.context, self.pad_id, self.device = chats, context, pad_id, device
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.generator = torch.Generator().manual_seed(seed)

    def _row(self) -> tuple[list[int], list[int]]:
        picks = torch.randint(0, len(self.chats), (self.DRAWS_PER_ROW,), generator=self.generator).tolist()
        chosen, length = [], 0
        for i in picks:
            size = min(len(self.chats[i].ids), self.context + 1)
            if chosen and length + size > self.context + 1:
                continue
            chosen.append(self.chats[i])
            length += size
        rows_ids, rows_mask = pack_rows(chosen, self.context, self.pad_id)
        return rows_ids[0], rows_mask[0]

    def next_step(self) -> list[Batch]:
        """The micro-batches of the next optimizer step."""
        batches = []
        for _ in range(self.grad_accum):
            rows = [self._row() for _ in range(self.batch_size)]
            batches.append(rows_to_batch([r[0] for r in rows], [r[1] for r in rows], self.device))
        return batches

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
