"""`glassgpt look VIEW`: look inside a trained model, one idea of the explanations at a time.

Views: next, tokens, embeddings, attention, context, trajectory, pipeline. Each prints a
readable text form; `--png FILE` also draws the same data; `--json` prints the same data as
JSON instead of the text (the PNG is still written when asked for). Without `--model` the
views use the model `glassgpt demo` left in runs/demo, and say which model they read.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

from glassgpt.errors import GlassError


def _common(p: argparse.ArgumentParser) -> None:
    from glassgpt.commands.common import add_model_option

    add_model_option(p)
    p.add_argument("--png", type=Path, metavar="FILE", help="also draw the view to this PNG file")
    p.add_argument(
        "--json", action="store_true", help="print the view's data as JSON instead of text"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "look",
        help="look inside a trained model: next tokens, tokens, embeddings, attention...",
        description="Look inside a trained model. Each view prints its numbers; --png FILE also "
        "draws them, --json prints them as JSON. Layers, heads and positions count "
        "from 0 (position 0 is the start token).",
    )
    views = p.add_subparsers(dest="view", metavar="VIEW")
    views.required = True

    v = views.add_parser(
        "next",
        help="the ranked next-token table and how temperature reshapes it",
        description="The most likely next tokens after TEXT with their probability "
        "and cumulative probability, at temperatures 0, 0.5, 1, 1.5. "
        "--step continues the text with the token you choose.",
    )
    v.add_argument("text", help="the text to continue")
    v.add_argument("--top", type=int, default=10, help="rows of the table (default 10)")
    v.add_argument(
        "--step",
        action="store_true",
        help="choose a token and continue: a number = that rank, Enter = the top "
        "token, q = quit (reads standard input)",
    )
    v.add_argument("--max-steps", type=int, default=20, help="most steps with --step (default 20)")
    _common(v)
    v.set_defaults(func=run_next)

    v = views.add_parser("tokens", help="the text split into tokens, ours and GPT-2's side by side")
    v.add_argument("text", help="the text to split")
    _common(v)
    v.set_defaults(func=run_tokens)

    v = views.add_parser(
        "embeddings",
        help="nearest neighbours, analogies, a 2-D word map, sentence similarity",
        description="Word vectors are input embeddings; a word is looked up with a leading space "
        "(' king'); a word split into several tokens uses the mean of their vectors. "
        "With no option, shows every part on example words.",
    )
    v.add_argument("--near", action="append", metavar="WORD", help="nearest neighbours of WORD")
    v.add_argument("--analogy", nargs=3, metavar=("A", "B", "C"), help="A : B :: C : ?")
    v.add_argument("--expect", metavar="D", help="the answer you expect to the analogy")
    v.add_argument("--map", nargs="+", metavar="WORD", help="draw these words in 2-D (PCA)")
    v.add_argument(
        "--sentence",
        action="append",
        metavar="TEXT",
        help="a sentence to compare (repeat; embedding = mean final hidden state)",
    )
    v.add_argument("--top", type=int, default=10, help="neighbours to show (default 10)")
    _common(v)
    v.set_defaults(func=run_embeddings)

    v = views.add_parser(
        "attention",
        help="attention weights per layer and head",
        description="Attention weights of every layer and head (recomputed from "
        "the model's queries and keys), and where one position looks.",
    )
    v.add_argument("text")
    v.add_argument("--layer", type=int, help="only this layer (from 0)")
    v.add_argument("--head", type=int, help="only this head (from 0)")
    v.add_argument(
        "--position",
        type=int,
        default=-1,
        help="the position whose attention is listed (default -1 = the last)",
    )
    v.add_argument("--top", type=int, default=3, help="positions listed per head (default 3)")
    _common(v)
    v.set_defaults(func=run_attention)

    v = views.add_parser(
        "context",
        help="one word's vector in two sentences, layer by layer",
        description="How context changes a word: its vector (last token if it is "
        "split) in each sentence at every depth, compared between the "
        "sentences and with context words (--to).",
    )
    v.add_argument("sentences", nargs="+", metavar="SENTENCE", help="two sentences")
    v.add_argument("--word", required=True, help="a word in both sentences")
    v.add_argument(
        "--to",
        nargs="+",
        default=[],
        metavar="WORD",
        help="context words to compare with (e.g. river money)",
    )
    _common(v)
    v.set_defaults(func=run_context)

    v = views.add_parser("trajectory", help="the text's path through meaning space")
    v.add_argument("text")
    _common(v)
    v.set_defaults(func=run_trajectory)

    v = views.add_parser("pipeline", help="one forward pass, step by step, in numbers")
    v.add_argument("text")
    v.add_argument("--top", type=int, default=5, help="most likely tokens shown (default 5)")
    _common(v)
    v.set_defaults(func=run_pipeline)


# ----------------------------------------------------------------------------- plumbing


def _load(args: argparse.Namespace):
    """The model (float32, eval) and tokenizer of --model or the demo, and a header for it."""
    from glassgpt.commands.common import model_path
    from glassgpt.explain.look.views import model_info
    from glassgpt.runs import load_run

    run = load_run(model_path(args))
    model = run.model.float().eval()
    info = model_info(model, run.tokenizer, run.path, run.config.preset, run.step)
    return model, run.tokenizer, info


def _emit(args: argparse.Namespace, info: Any, view: Any, text: str, draw: Any) -> int:
    """Print the view (text or JSON) and draw it if --png was given."""
    from glassgpt.explain.look.text import header
    from glassgpt.explain.look.views import view_json

    if args.png is not None:
        draw(view, args.png)
    if args.json:
        print(json.dumps(view_json(args.view, info, view), ensure_ascii=False))
        if args.png is not None:
            print(f"picture: {args.png}", file=sys.stderr)
        return 0
    if info is not None:
        print(header(info) if not isinstance(info, str) else info)
        print()
    print(text)
    if args.png is not None:
        print(f"\npicture: {args.png}")
    return 0


def _ids(model, tokenizer, text: str) -> list[int]:
    from glassgpt.explain.look.views import encode_text

    return encode_text(tokenizer, text, model.config.context_length)


# ----------------------------------------------------------------------------- views


def run_next(args: argparse.Namespace) -> int:
    from glassgpt.explain.look import draw
    from glassgpt.explain.look.text import header, render_next, visible
    from glassgpt.explain.look.views import next_table

    if args.step and args.json:
        raise GlassError("--step is interactive: use it without --json")
    if args.max_steps < 1:
        raise GlassError(f"--max-steps must be at least 1, got {args.max_steps}")
    model, tokenizer, info = _load(args)
    ids = _ids(model, tokenizer, args.text)
    table = next_table(model, tokenizer, ids, args.top)
    if not args.step:
        return _emit(args, info, table, render_next(table), draw.draw_next)

    print(header(info))
    context = model.config.context_length
    for step in range(1, args.max_steps + 1):
        print()
        print(render_next(table, temperatures=step == 1))
        if len(ids) >= context:
            print(f"\nthe context ({context} tokens) is full: stopping")
            break
        choice = _ask(len(table.rows))
        if choice is None:
            break
        row = table.rows[choice - 1]
        ids.append(row.id)
        print(
            f"\nstep {step}: took rank {row.rank} {visible(row.token)!r} -> "
            f"{visible(tokenizer.decode(ids[1:]))!r}"
        )
        table = next_table(model, tokenizer, ids, args.top)
    else:
        print(f"\n{args.max_steps} steps done (--max-steps)")
    if args.png is not None:
        draw.draw_next(table, args.png)
        print(f"picture: {args.png}")
    return 0


def _ask(rows: int, tries: int = 5) -> int | None:
    """Read a rank (1..rows), Enter (= 1) or q from standard input; None = stop."""
    for _ in range(tries):
        print(
            f"choose: 1-{rows} = that token, Enter = the top one, q = quit > ", end="", flush=True
        )
        line = sys.stdin.readline()
        if not line:  # end of input
            print()
            return None
        answer = line.strip().lower()
        if not sys.stdin.isatty():
            print(answer or "(Enter)")  # echo piped input so the transcript reads naturally
        if answer in ("q", "quit", "exit"):
            return None
        if not answer:
            return 1
        if answer.isdigit() and 1 <= int(answer) <= rows:
            return int(answer)
        print(f"'{answer}' is not a choice: type a number 1-{rows}, press Enter, or q")
    return None


@functools.lru_cache(maxsize=1)
def _gpt2():
    """GPT-2's tokenizer, built once per process (it takes a few seconds)."""
    from glassgpt.tokenizer import Tokenizer

    return Tokenizer.gpt2()


def run_tokens(args: argparse.Namespace) -> int:
    from glassgpt.commands.common import model_path
    from glassgpt.explain.look import draw
    from glassgpt.explain.look.text import render_tokens
    from glassgpt.explain.look.views import tokens_view
    from glassgpt.runs import RunFolder

    if not args.text:
        raise GlassError("the text is empty: give some text to split into tokens")
    path = model_path(args)
    run = RunFolder(path)
    run.load_config()  # clear errors for a missing or wrong folder
    ours = run.load_tokenizer()
    view = tokens_view(args.text, [("ours", ours), ("GPT-2", _gpt2())])
    return _emit(
        args, f"tokenizer: {run.tokenizer_path}", view, render_tokens(view), draw.draw_tokens
    )


def run_embeddings(args: argparse.Namespace) -> int:
    from glassgpt.explain.look import draw
    from glassgpt.explain.look.text import render_embeddings
    from glassgpt.explain.look.views import embeddings_view

    if args.expect and not args.analogy:
        raise GlassError("--expect goes with --analogy A B C")
    model, tokenizer, info = _load(args)
    view = embeddings_view(model, tokenizer, near=args.near, analogy_words=args.analogy,
                           expect=args.expect, map_words=args.map, sentences=args.sentence,
                           top=args.top)
    return _emit(args, info, view, render_embeddings(view), draw.draw_embeddings)


def run_attention(args: argparse.Namespace) -> int:
    from glassgpt.explain.look import draw
    from glassgpt.explain.look.text import render_attention
    from glassgpt.explain.look.views import attention_view

    if args.top < 1:
        raise GlassError(f"--top must be at least 1, got {args.top}")
    model, tokenizer, info = _load(args)
    ids = _ids(model, tokenizer, args.text)
    view = attention_view(model, tokenizer, ids, args.layer, args.head, args.position, args.top)
    return _emit(args, info, view, render_attention(view), draw.draw_attention)


def run_context(args: argparse.Namespace) -> int:
    from glassgpt.explain.look import draw
    from glassgpt.explain.look.text import render_context
    from glassgpt.explain.look.views import context_view

    if len(args.sentences) != 2:
        raise GlassError(f"give exactly 2 sentences, got {len(args.sentences)}")
    model, tokenizer, info = _load(args)
    view = context_view(model, tokenizer, args.sentences, args.word, args.to)
    return _emit(args, info, view, render_context(view), draw.draw_context)


def run_trajectory(args: argparse.Namespace) -> int:
    from glassgpt.explain.look import draw
    from glassgpt.explain.look.text import render_trajectory
    from glassgpt.explain.look.views import trajectory_view

    model, tokenizer, info = _load(args)
    view = trajectory_view(model, tokenizer, _ids(model, tokenizer, args.text))
    return _emit(args, info, view, render_trajectory(view), draw.draw_trajectory)


def run_pipeline(args: argparse.Namespace) -> int:
    from glassgpt.explain.look import draw
    from glassgpt.explain.look.text import render_pipeline
    from glassgpt.explain.look.views import pipeline_view

    if args.top < 1:
        raise GlassError(f"--top must be at least 1, got {args.top}")
    model, tokenizer, info = _load(args)
    view = pipeline_view(model, tokenizer, _ids(model, tokenizer, args.text), args.top)
    return _emit(args, info, view, render_pipeline(view), draw.draw_pipeline)
