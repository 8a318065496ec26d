"""`glassgpt generate`: continue a prompt with a trained model, streaming the text."""

from __future__ import annotations

import argparse
import sys

from glassgpt.commands.common import (
    add_device_option,
    add_model_option,
    add_quantize_option,
    device,
    for_decoding,
    model_path,
)
from glassgpt.engine import Engine, SamplingConfig
from glassgpt.runs import load_run


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate", help="continue a prompt with a trained model",
        description="Continue PROMPT token by token. Temperature 0 always takes the most likely token.",
    )
    p.add_argument("prompt", help="the text to continue ('-' reads it from standard input)")
    add_model_option(p)
    p.add_argument("--temperature", "-t", type=float, default=0.8, help="0 = greedy; higher = more random (default 0.8)")
    p.add_argument("--top-k", type=int, default=0, help="draw only from the k most likely tokens (0 = off)")
    p.add_argument("--top-p", type=float, default=1.0, help="draw only from the smallest set reaching probability p (1 = off)")
    p.add_argument("--max-tokens", "-n", type=int, default=200, help="most new tokens (default 200)")
    p.add_argument("--samples", type=int, default=1, help="continuations of the prompt, made as one batch")
    p.add_argument("--seed", type=int, help="random seed: the same seed gives the same text")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop when this text appears (repeatable)")
    p.add_argument("--ignore-eos", action="store_true", help="keep going past the end-of-text token")
    add_quantize_option(p)
    add_device_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              max_new_tokens=args.max_tokens, num_samples=args.samples, seed=args.seed,
                              stop=tuple(args.stop), stop_at_eos=not args.ignore_eos)
    run_ = load_run(model_path(args), device(args))
    engine = Engine(for_decoding(run_.model, args), run_.tokenizer)
    prompt_ids, cropped = engine.encode_prompt(prompt)
    if cropped:
        print(f"note: the prompt is {len(prompt_ids) + cropped - 1} tokens; kept its last {len(prompt_ids) - 1} "
              f"to fit the model's context of {engine.context}", file=sys.stderr)
    if args.samples == 1:
        sys.stdout.write(prompt)
        sys.stdout.flush()

        def stream(_: int, text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        engine.generate(prompt, sampling, on_text=stream)
        sys.stdout.write("\n")
        return 0
    result = engine.generate(prompt, sampling)
    for i, completion in enumerate(result.completions):
        print(f"--- sample {i + 1} ({completion.finish_reason}) ---")
        print(prompt + completion.text)
    return 0
