"""RL on addition from a chat model that can add (an experiment for issue 10).

RL sharpens a skill the chat model already has; it cannot make one. This script makes a chat
model that has the skill and nothing else, then lets RL practise it, with glassgpt's own
commands:

1. `glassgpt train ... --max-steps 1`: a model of the shipped model's shape that has read
   (almost) no text, so no large weights or one-hot attention limit what it learns next;
2. `glassgpt sft --data add.jsonl`: chat tuning on addition alone (the built-in task's train
   split, both answer styles at random, one exchange per conversation);
3. `glassgpt rl --task addition`: GRPO-style RL with held-out accuracy (greedy) every
   `--eval-every` steps.

    python benchmarks/rl_addition.py --out runs/rl_addition            # ~30 min on 2 cores

It prints the held-out accuracy and mean answer length at each evaluation of the RL run (step
0 is the chat model before RL). Results on this machine: README, "How it got there".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `glassgpt` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from glassgpt.entry import prepare_process  # noqa: E402

prepare_process(os.environ)  # before torch, as the `glassgpt` command does: MKL's fast code on AMD CPUs

from glassgpt.atomic import atomic_write_text  # noqa: E402
from glassgpt.commands.common import positive_int  # noqa: E402
from glassgpt.commands.train_cmd import MODEL_FLAGS  # noqa: E402
from glassgpt.data.tasks import conversations  # noqa: E402
from glassgpt.runs import RunFolder, shipped_model  # noqa: E402


def shipped_shape() -> list[str]:
    """`glassgpt train` flags for a model of the shipped base's shape (read from its config.json)."""
    folder = shipped_model()
    if folder is None:
        raise SystemExit("rl_addition: this install has no shipped model to copy the shape of")
    model = RunFolder(folder).load_config().model
    flags = ["--preset", "small"]
    for flag, field in MODEL_FLAGS.items():  # the CLI's own flag -> ModelConfig field map
        flags += [f"--{flag.replace('_', '-')}", str(getattr(model, field))]
    return flags


def glassgpt(*args: str) -> None:
    """Run one glassgpt command in a child process (as a user would), failing loudly."""
    command = [sys.executable, "-m", "glassgpt", *args]
    print("$ glassgpt " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


def addition_chats(path: Path, n: int, seed: int) -> None:
    """`n` addition conversations of the train split as JSONL (the format `glassgpt sft --data` reads)."""
    lines = (json.dumps({"messages": messages})
             for messages in conversations(n, seed=seed, split="train", multi_turn=0.0, mixture={"addition": 1.0}))
    atomic_write_text(path, "\n".join(lines) + "\n")


def heldout_curve(rl_run: Path) -> list[tuple[int, float, float]]:
    """(step, held-out accuracy, mean held-out answer tokens) at each evaluation of an RL run."""
    return [(r["step"], r["heldout_accuracy"], r["heldout_length_mean"])
            for r in RunFolder(rl_run).read_metrics() if "heldout_accuracy" in r]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the three runs and the data")
    p.add_argument("--conversations", type=positive_int, default=20_000, help="addition conversations for SFT")
    p.add_argument("--sft-steps", type=positive_int, default=1200)
    p.add_argument("--rl-steps", type=positive_int, default=100)
    p.add_argument("--eval-every", type=positive_int, default=25)
    p.add_argument("--heldout-problems", type=positive_int, default=60)
    p.add_argument("--lr", type=float, default=5e-5, help="RL's learning rate")
    p.add_argument("--tiny", action="store_true", help="a tiny model and batches (for the test suite)")
    args = p.parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"rl_addition: {args.out} exists; pick a new --out")
    args.out.mkdir(parents=True)
    shape = ["--preset", "tiny", "--context", "128"] if args.tiny else shipped_shape()
    small = ["--batch-size", "2", "--eval-every", str(args.sft_steps)] if args.tiny else []
    data = args.out / "add.jsonl"
    addition_chats(data, args.conversations, seed=0)
    blank, chat, rl = args.out / "blank", args.out / "sft", args.out / "rl"
    # One step makes the blank model's run folder: compiling it (the small preset's default) would only cost time.
    glassgpt("train", *shape, "--max-steps", "1", "--compile", "off", "--no-progress", "--out", str(blank))
    glassgpt("sft", "--model", str(blank), "--data", str(data), "--max-steps", str(args.sft_steps), *small,
             "--no-progress", "--out", str(chat))
    glassgpt("rl", "--model", str(chat), "--task", "addition", "--lr", str(args.lr), "--max-steps", str(args.rl_steps),
             "--eval-every", str(args.eval_every), "--heldout-problems", str(args.heldout_problems),
             *(["--batch-size", "2", "--group-size", "2", "--problems-per-step", "1", "--max-response-tokens", "8"]
               if args.tiny else []),
             "--no-progress", "--out", str(rl))
    print("\nRL on addition: held-out accuracy (greedy) and mean answer length")
    for step, accuracy, length in heldout_curve(rl):
        print(f"  step {step:4d}: {accuracy:6.1%}  {length:5.1f} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
