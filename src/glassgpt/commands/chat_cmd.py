"""`glassgpt chat`: talk to a chat-tuned model in the terminal, or ask it one question."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from glassgpt.chat import CHAT_SAMPLING, ChatSession, Reply, load_chat_model
from glassgpt.commands.common import add_device_option, add_quantize_option, device, for_decoding
from glassgpt.commands.sft_cmd import DEFAULT_OUT
from glassgpt.engine import SamplingConfig
from glassgpt.errors import GlassError
from glassgpt.runs import SHIPPED_CHAT_MODEL, default_model

HELP = "commands: /reset (forget the conversation), /temperature T, /quit (or Ctrl-D)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "chat", help="chat with a chat-tuned model (made by `glassgpt sft`)",
        description="An interactive chat in the terminal, streaming the answers. With a QUESTION, answer it "
                    f"once and exit. {HELP}.",
    )
    p.add_argument("question", nargs="?", help="answer this one question and exit ('-' reads it from standard input)")
    p.add_argument("--model", type=Path, default=None,
                   help=f"run folder of a chat model (default: {DEFAULT_OUT}, else the one shipped with glassgpt)")
    p.add_argument("--temperature", "-t", type=float, default=CHAT_SAMPLING.temperature,
                   help=f"0 = always the most likely token (default {CHAT_SAMPLING.temperature})")
    p.add_argument("--top-k", type=int, default=CHAT_SAMPLING.top_k, help=f"default {CHAT_SAMPLING.top_k}; 0 = off")
    p.add_argument("--max-tokens", "-n", type=int, default=CHAT_SAMPLING.max_new_tokens,
                   help=f"longest answer in tokens (default {CHAT_SAMPLING.max_new_tokens})")
    p.add_argument("--seed", type=int, help="random seed: the same seed gives the same answers")
    p.add_argument("--system", help="a system message that opens the conversation")
    add_quantize_option(p)
    add_device_option(p)
    p.set_defaults(func=run)


def _stream(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _notes(reply: Reply, context: int) -> None:
    if reply.dropped_turns:
        print(f"(note: the conversation outgrew the model's context of {context} tokens: the oldest "
              f"{reply.dropped_turns} exchange(s) were left out)", file=sys.stderr)
    if reply.cropped_tokens:
        print(f"(note: the message was too long: its first {reply.cropped_tokens} tokens were cut)", file=sys.stderr)
    if not reply.finished:
        print(f"(note: the answer was cut at {reply.num_tokens} tokens; --max-tokens allows more)", file=sys.stderr)


def _temperature(session: ChatSession, argument: str) -> str:
    try:
        session.sampling = dataclasses.replace(session.sampling, temperature=float(argument))
    except ValueError:
        return "usage: /temperature T, with T a number >= 0 (0 = greedy)"
    except GlassError as err:
        return str(err)
    return f"temperature is now {session.sampling.temperature:g}"


def interactive(session: ChatSession) -> None:
    print(f"chatting with a model of context {session.engine.context} tokens; {HELP}")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            return
        if not line:
            continue
        command, _, argument = line.partition(" ")
        if command == "/quit":
            return
        if command == "/reset":
            session.reset()
            print("(conversation forgotten)")
            continue
        if command == "/temperature":
            print(_temperature(session, argument.strip()))
            continue
        if command.startswith("/"):
            print(f"unknown command {command}; {HELP}")
            continue
        _stream("glassgpt> ")
        reply = session.ask(line, on_text=_stream)
        print()
        _notes(reply, session.engine.context)


def run(args: argparse.Namespace) -> int:
    path = args.model or default_model(DEFAULT_OUT, SHIPPED_CHAT_MODEL)
    if path is None:
        raise GlassError(f"no --model given, no chat model at {DEFAULT_OUT} and none shipped with this install: "
                         f"make one with `glassgpt sft --out {DEFAULT_OUT}`")
    sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, max_new_tokens=args.max_tokens,
                              seed=args.seed)
    run_ = load_chat_model(path, device(args))
    for_decoding(run_.model, args)  # in place
    session = ChatSession.of(run_, sampling, args.system)
    if args.question is None:
        interactive(session)
        return 0
    question = sys.stdin.read() if args.question == "-" else args.question
    reply = session.ask(question, on_text=_stream)
    print()
    _notes(reply, session.engine.context)
    return 0
