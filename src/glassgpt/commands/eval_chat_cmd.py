"""`glassgpt eval-chat`: accuracy per task on held-out problems (base, chat and RL models alike)."""

from __future__ import annotations

import argparse
import sys

from glassgpt.chat_eval import evaluate_chat, total
from glassgpt.chat_template import is_chat_stage
from glassgpt.commands.common import (
    add_device_option,
    add_model_option,
    device,
    model_path,
    positive_int,
)
from glassgpt.data.tasks import TASKS, Verdict, get_task
from glassgpt.runs import load_run


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval-chat", help="accuracy per task on held-out problems",
        description="Ask a model held-out problems of the built-in tasks (greedy) and check its answers. "
                    "Chat models (sft, rl) get each question through the chat template; base models get a "
                    "few-shot prompt. Tasks: " + ", ".join(f"{t.name} ({t.description})" for t in TASKS.values()),
    )
    add_model_option(p)
    p.add_argument("--task", action="append", metavar="NAME",
                   help="only this task (repeatable; default: all)")
    p.add_argument("--problems", type=positive_int, default=50, metavar="N",
                   help="held-out problems per task (default 50)")
    p.add_argument("--seed", type=int, default=0, help="which held-out problems (default 0)")
    p.add_argument("--show", action="store_true", help="print every question, answer and verdict")
    add_device_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in args.task or ():
        get_task(name)  # an unknown task fails before the model loads
    path = model_path(args)
    loaded = load_run(path, device(args))
    how = "chat template" if is_chat_stage(loaded.config.stage) else "few-shot prompt (base model)"
    print(f"model: {path} ({loaded.config.stage}, step {loaded.step:,}); greedy, {how}; "
          f"{args.problems} held-out problems per task (seed {args.seed})")

    def show(answer) -> None:
        if args.show:
            print(f"[{answer.verdict.value}] {answer.problem.question!r} -> {answer.text!r}")
        else:
            print(".", end="", file=sys.stderr, flush=True)

    scores = evaluate_chat(loaded, args.task, n=args.problems, seed=args.seed, on_answer=show)
    if not args.show:
        print(file=sys.stderr)
    print(f"{'task':<12} {'problems':>8} {'right':>6} {'wrong':>6} {'malformed':>9} {'accuracy':>8} "
          f"{'mean tokens':>11}")
    for score in [*scores, total(scores)] if len(scores) > 1 else scores:
        print(f"{score.task:<12} {len(score.answers):>8} {score.count(Verdict.RIGHT):>6} "
              f"{score.count(Verdict.WRONG):>6} {score.count(Verdict.MALFORMED):>9} {score.accuracy:>8.1%} "
              f"{score.mean_tokens:>11.1f}")
    return 0
