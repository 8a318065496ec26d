"""The `glassgpt` command: builds the parser from the subcommand modules and runs one.

A `GlassError` (a problem the user can fix) prints as one line with a non-zero exit and no
traceback.
"""

from __future__ import annotations

import argparse
import sys

from torch.distributed import DistError

from glassgpt import __version__
from glassgpt.commands import (
    chat_cmd,
    corpus_cmd,
    demo_cmd,
    eval_chat_cmd,
    eval_cmd,
    export_cmd,
    generate_cmd,
    import_cmd,
    look_cmd,
    ngram_cmd,
    nn_cmd,
    pipeline_cmd,
    rl_cmd,
    serve_cmd,
    sft_cmd,
    train_cmd,
)
from glassgpt.errors import GlassError
from glassgpt.runtime import keep_freed_memory

# Every subcommand, in the order `--help` lists them; each module's `register(subparsers)`
# adds its subcommand with `func` set.
COMMANDS = [demo_cmd, train_cmd, generate_cmd, eval_cmd, export_cmd, import_cmd, corpus_cmd, ngram_cmd, nn_cmd,
            look_cmd, sft_cmd, rl_cmd, pipeline_cmd, chat_cmd, eval_chat_cmd, serve_cmd]


# The subcommands that train: each step frees and allocates the same large blocks, which malloc
# then keeps for the next step instead of faulting fresh pages in (`keep_freed_memory` says why).
TRAINING_COMMANDS = frozenset({"demo", "train", "sft", "rl", "pipeline"})


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other error
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="glassgpt",
        description="Build, train, run and look inside a GPT on your own laptop.",
    )
    parser.add_argument("--version", action="version", version=f"glassgpt {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in TRAINING_COMMANDS:
        keep_freed_memory()
    try:
        result = args.func(args)
    except GlassError as err:
        print(f"glassgpt: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # the filesystem said no: a path that is a file, unwritable, disk full
        where = f": {err.filename}" if err.filename else ""
        print(f"glassgpt: error: {err.strerror or err}{where} (check the path and its permissions)",
              file=sys.stderr)
        return 1
    except DistError as err:  # a peer process under torchrun died or hung
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"glassgpt: error: another training process stopped, so this one stops too ({first[:200]}); "
              "the run keeps its last checkpoint: continue with --resume", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("glassgpt: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
