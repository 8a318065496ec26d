"""`glassgpt rl`: reinforcement learning of a chat model on problems with checkable answers."""

from __future__ import annotations

import argparse
from pathlib import Path

from glassgpt.commands.common import device, positive_float, positive_int
from glassgpt.commands.sft_cmd import DEFAULT_OUT as CHAT_RUN
from glassgpt.commands.sft_cmd import add_finetune_options
from glassgpt.commands.train_cmd import train_changes
from glassgpt.config import ADVANTAGES, RLConfig
from glassgpt.data.tasks import TASKS
from glassgpt.errors import GlassError
from glassgpt.runs import RunFolder
from glassgpt.train.rl import RL_TRAIN, rl, rl_config

DEFAULT_OUT = Path("runs/rl")
RL_FLAGS = {"task": "tasks", "group_size": "group_size", "problems_per_step": "problems_per_step",
            "max_response_tokens": "max_response_tokens", "sample_temperature": "temperature",
            "heldout_problems": "heldout_problems", "advantage": "advantage"}


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = RLConfig()
    p = subparsers.add_parser(
        "rl", help="reinforcement learning of a chat model on checkable problems (GRPO-style)",
        description="Practise the built-in tasks: per problem a group of sampled answers; reward 1 when the final "
                    "answer is right and the reply ended, else 0; advantage = reward - the group's mean "
                    "(by default not divided by its std); token-level policy-gradient loss. Logs reward, response length, "
                    f"truncation and held-out accuracy; draws them in rl_curves.png. Recipe: AdamW lr {RL_TRAIN.lr:g}, "
                    f"{RL_TRAIN.max_steps} steps.",
    )
    p.add_argument("--model", type=Path, default=CHAT_RUN, help=f"the chat run to start from (default: {CHAT_RUN})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"run folder to write (default: {DEFAULT_OUT})")
    p.add_argument("--resume", action="store_true", help="continue the RL run in --out from its last checkpoint")
    g = p.add_argument_group("reinforcement learning")
    g.add_argument("--task", action="append", choices=list(TASKS), metavar="NAME",
                   help=f"a task to practise (repeatable; default: {', '.join(defaults.tasks)})")
    g.add_argument("--group-size", type=int, help=f"samples per problem, >= 2 (default {defaults.group_size})")
    g.add_argument("--problems-per-step", type=positive_int, help=f"default {defaults.problems_per_step}")
    g.add_argument("--max-response-tokens", type=positive_int,
                   help=f"longer answers are cut and get no reward (default {defaults.max_response_tokens})")
    g.add_argument("--sample-temperature", type=positive_float,
                   help=f"temperature of the practice answers (default {defaults.temperature:g})")
    g.add_argument("--heldout-problems", type=positive_int,
                   help=f"held-out problems per task for the accuracy curve (default {defaults.heldout_problems})")
    g.add_argument("--advantage", choices=list(ADVANTAGES),
                   help=f"reward - group mean ('mean', Dr. GRPO) or also over the group's std ('std', GRPO) "
                        f"(default {defaults.advantage})")
    add_finetune_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    changes = {field: getattr(args, flag) for flag, field in RL_FLAGS.items() if getattr(args, flag) is not None}
    if args.resume:
        if changes:
            raise GlassError("--resume continues the saved RL settings: drop the reinforcement learning options")
        config = RunFolder(args.out).load_config().for_resume(train=train_changes(args))
    else:
        if "tasks" in changes:
            changes["tasks"] = tuple(changes["tasks"])
        config = rl_config(args.model, rl=changes, train=train_changes(args))
    rl(config, args.out, resume=args.resume, device=device(args), show_progress=not args.no_progress)
    print(f"curves: {RunFolder(args.out).rl_curves_path}   try it: glassgpt chat --model {args.out}   "
          f"measure it: glassgpt eval-chat --model {args.out}")
    return 0
