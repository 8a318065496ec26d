"""Chat tuning without packing: one conversation per row (an experiment for issue 10).

`glassgpt sft` packs whole conversations one after another into rows of the context, so a
conversation is read after unrelated ones (it can attend to them) and at any position. A chat
always starts at position 0 with nothing before it. This script runs the same SFT (the
built-in data, `SFT_TRAIN`, the shipped base model unless --model) with one conversation per
row instead: each step draws conversations until they hold as many tokens as the packed rows
would, sorts them by length and cuts them into micro-batches of `batch_size` rows, each padded to
its longest conversation. (The loop weighs micro-batches equally, not by their answer tokens;
the SFT log's "packed rows of 256 tokens" line is `glassgpt sft`'s own and is not true here.)

    python benchmarks/sft_unpacked.py --out runs/sft_unpacked
    glassgpt rl --model runs/sft_unpacked --out runs/rl_unpacked --eval-every 25

Compare `glassgpt eval-chat` (or the RL run's step-0 held-out accuracy) with the packed
`runs/pipeline/sft`. Result on this machine: README, "What it did here".
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `glassgpt` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from glassgpt.entry import prepare_process  # noqa: E402

prepare_process(os.environ)  # before torch, as the `glassgpt` command does: MKL's fast code on AMD CPUs

import torch  # noqa: E402

import glassgpt.train.sft as sft_module  # noqa: E402
from glassgpt.commands.common import positive_int  # noqa: E402
from glassgpt.data.batches import Batch  # noqa: E402
from glassgpt.data.chats import ChatBatches, rows_to_batch  # noqa: E402
from glassgpt.errors import GlassError  # noqa: E402
from glassgpt.runs import shipped_model  # noqa: E402


class UnpackedChatBatches(ChatBatches):
    """`ChatBatches` with one conversation per row, rows of similar length batched together."""

    def next_step(self) -> list[Batch]:
        budget = self.batch_size * self.grad_accum * (self.context + 1)  # what the packed rows hold
        chosen, total = [], 0
        while total < budget:
            chat = self.chats[int(torch.randint(0, len(self.chats), (1,), generator=self.generator))]
            chosen.append(chat)
            total += min(len(chat.ids), self.context + 1)
        chosen.sort(key=lambda chat: len(chat.ids))  # similar lengths together: little padding
        batches = []
        for first in range(0, len(chosen), self.batch_size):
            group = chosen[first:first + self.batch_size]
            width = min(max(len(chat.ids) for chat in group), self.context + 1)
            ids = [chat.ids[:width] + [self.pad_id] * (width - len(chat.ids[:width])) for chat in group]
            mask = [chat.mask[:width] + [0] * (width - len(chat.mask[:width])) for chat in group]
            batches.append(rows_to_batch(ids, mask, self.device))
        return batches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="base run folder (default: the shipped model)")
    parser.add_argument("--out", type=Path, default=Path("runs/sft_unpacked"))
    parser.add_argument("--max-steps", type=positive_int, help=f"default {sft_module.SFT_TRAIN.max_steps}")
    args = parser.parse_args(argv)
    base = args.model or shipped_model()
    try:
        if base is None:
            raise GlassError("no model shipped with this install: give --model RUN")
        train = {"max_steps": args.max_steps} if args.max_steps is not None else None
        config = sft_module.sft_config(base, train=train)
        sft_module.ChatBatches = UnpackedChatBatches  # the one change from `glassgpt sft`
        sft_module.sft(config, args.out, show_progress=False)
    except GlassError as err:
        print(f"sft_unpacked: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
