"""`glassgpt ngram`: from letter counts to n-gram models, and why counting runs out of data.

Prints letter frequencies, letter pairs, then character (n = 1..8) and word (n = 1..4) n-gram
models with their table sizes, held-out bits per byte and generated text; writes the PNGs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from glassgpt.errors import GlassError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ngram",
        help="letter counts, letter pairs and n-gram models: text from counting",
        description=(
            "Count letters, letter pairs, character n-grams (n=1..8) and word n-grams (n=1..4) "
            "of the training text, generate text from each model (same seed for all) and score "
            "each on the held-out validation text in bits per byte."
        ),
    )
    p.add_argument("--data", help="text file, folder of .txt files, or glob (default: built-in)")
    p.add_argument("--max-n", type=int, default=8, help="largest character n (1..8, default 8)")
    p.add_argument(
        "--words-max-n",
        type=int,
        default=4,
        help="largest word n (1..4, 0 = no word models; default 4)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of every sample (default 0)")
    p.add_argument(
        "--temperature", type=float, default=1.0, help="sampling temperature, 0 = argmax (1.0)"
    )
    p.add_argument(
        "--length", type=int, default=120, help="characters to generate per model (default 120)"
    )
    p.add_argument("--prompt", default="The", help="text every sample starts from (default 'The')")
    p.add_argument("--model", metavar="RUN", action="append", default=[],
                   help="a trained GPT run folder to compare with (repeat for several)")
    p.add_argument("--out", default="ngram", help="folder for the PNGs (default ./ngram)")
    p.set_defaults(func=run)


def _validate(args: argparse.Namespace) -> None:
    from glassgpt.explain.ngram import CHAR_MAX_N, WORD_MAX_N, check_temperature
    from glassgpt.explain.ngram_draw import GPT_COLOURS

    if len(args.model) > len(GPT_COLOURS):
        raise GlassError(f"--model can be given at most {len(GPT_COLOURS)} times, got {len(args.model)}")
    if not 1 <= args.max_n <= CHAR_MAX_N:
        raise GlassError(f"--max-n must be 1..{CHAR_MAX_N}, got {args.max_n}")
    if not 0 <= args.words_max_n <= WORD_MAX_N:
        raise GlassError(
            f"--words-max-n must be 0..{WORD_MAX_N} (0 = no word models), got {args.words_max_n}"
        )
    if args.length < 1:
        raise GlassError(f"--length must be at least 1, got {args.length}")
    check_temperature(args.temperature)


def _gpt_bits_per_byte(run_dir: str, text: str) -> float:
    """The trained GPT's bits per byte on the same validation text the n-grams were scored on."""
    from glassgpt.evaluate import bits_per_byte

    return bits_per_byte(run_dir, text).bpb


def _gpt_label(run_dir: str) -> str:
    """'GPT NAME (3.3M params)': the run folder's name and the model's size."""
    from glassgpt.runs import RunFolder

    params = RunFolder(run_dir).load_config().model.num_parameters()
    return f"GPT {Path(run_dir).resolve().name} ({params / 1e6:.1f}M params)"


def _comparison_table(char_rows: list, word_rows: list, gpts: list[tuple[str, float]]) -> str:
    """A Markdown table of every model's validation bits per byte, best first."""
    entries = [(f"character {r.n}-gram", r.bits_per_byte) for r in char_rows]
    entries += [(f"word {r.n}-gram", r.bits_per_byte) for r in word_rows]
    entries += gpts
    lines = ["  | model | bits per byte |", "  |---|---:|"]
    lines += [f"  | {name} | {bpb:.3f} |" for name, bpb in sorted(entries, key=lambda e: e[1])]
    return "\n".join(lines)


def _letter(ch: str) -> str:
    return "␣" if ch == " " else ch


def _show(text: str) -> str:
    return text.replace("\r", "").replace("\n", "⏎")


def _print_rows(rows: list) -> None:
    print(f"  {'n':>2s} {'contexts':>11s} {'n-grams':>11s} {'val bits/byte':>14s}")
    for r in rows:
        print(f"  {r.n:2d} {r.contexts:11,d} {r.ngrams:11,d} {r.bits_per_byte:14.3f}")


def run(args: argparse.Namespace) -> int:
    _validate(args)
    from glassgpt.runs import RunFolder

    for run_dir in args.model:
        RunFolder(run_dir).load_config()  # a wrong --model fails now, not after all the counting
    from glassgpt.data.corpus import load_documents, split_documents
    from glassgpt.explain import ngram
    from glassgpt.explain.ngram_draw import plot_letters, plot_ngram_comparison, plot_pairs

    out = Path(args.out)
    split = split_documents(load_documents(args.data))
    train = [d.text for d in split.train]
    val = [d.text for d in split.val]
    n_train = sum(len(t.encode("utf-8")) for t in train)
    n_val = sum(len(t.encode("utf-8")) for t in val)
    source = "built-in corpus" if args.data is None else args.data
    print(
        f"{source}: {n_train / 1e6:.1f} MB training text, {n_val / 1e6:.2f} MB validation text "
        "(the last 5% of each document)"
    )

    # 1. letters and letter pairs
    letters = ngram.letter_frequencies(train)
    order = letters.counts.argsort()[::-1]
    cells = [f"{letters.letters[i]} {100 * letters.probabilities[i]:4.1f}%" for i in order]
    print(f"\nLetter frequencies ({letters.total:,} letters, case folded):")
    for start in range(0, 26, 9):
        print("  " + "  ".join(cells[start : start + 9]))
    pairs = ngram.letter_pairs(train)
    cond = pairs.conditional
    print("\nLetter pairs: the most likely next letter after each (␣ = space or punctuation):")
    cells = []
    for i, ch in enumerate(pairs.symbols):
        j = int(cond[i].argmax())
        cells.append(f"{_letter(ch)}→{_letter(pairs.symbols[j])} {100 * cond[i, j]:3.0f}%")
    for start in range(0, 27, 9):
        print("  " + "  ".join(cells[start : start + 9]))
    written = [plot_letters(letters, out / "letters.png"), plot_pairs(pairs, out / "pairs.png")]

    # 2. character n-grams
    t0 = time.perf_counter()
    chars = ngram.CharNGrams(train, args.max_n)
    t_count = time.perf_counter() - t0
    t0 = time.perf_counter()
    char_rows = ngram.char_rows(chars, val, args.prompt, args.length, args.seed, args.temperature)
    t_rest = time.perf_counter() - t0
    print(
        f"\nCharacter n-grams on UTF-8 bytes: counted n = 1..{args.max_n} over "
        f"{n_train / 1e6:.1f} MB in {t_count:.1f} s; scored and sampled in {t_rest:.1f} s"
    )
    print(f"  smoothing: {ngram.SMOOTHING}")
    print("  bits per byte = mean -log2 P(byte | previous n-1 bytes) on the validation text")
    _print_rows(char_rows)

    # 3. word n-grams
    word_rows = []
    if args.words_max_n > 0:
        t0 = time.perf_counter()
        words = ngram.WordNGrams(train, args.words_max_n)
        t_count = time.perf_counter() - t0
        t0 = time.perf_counter()
        word_rows = ngram.word_rows(
            words, val, args.prompt, args.length, args.seed, args.temperature
        )
        t_rest = time.perf_counter() - t0
        scores = words.bits_per_byte(val, orders=[1])
        print(
            f"\nWord n-grams over {len(words.vocab):,} word tokens (seen at least twice; the "
            f"space belongs to the word after it):\n  counted in {t_count:.1f} s, scored and "
            f"sampled in {t_rest:.1f} s"
        )
        print(
            "  bits per byte = (-log2 P(tokens) + spelling bits of each <unk>) / bytes;\n"
            f"  {100 * scores[0].unk_rate:.1f}% of validation tokens are <unk>, spelled by a "
            "byte-unigram model"
        )
        _print_rows(word_rows)

    # 4. the GPTs, when given
    gpts: list[tuple[str, float]] = []
    for run_dir in args.model:
        t0 = time.perf_counter()
        gpt_bpb = _gpt_bits_per_byte(run_dir, "".join(val))
        gpts.append((_gpt_label(run_dir), gpt_bpb))
        print(
            f"\nGPT {run_dir}: {gpt_bpb:.3f} bits per byte on the same validation text "
            f"({time.perf_counter() - t0:.0f} s)"
        )
    if gpts:
        print("\nCounting vs networks, on the same validation bytes (lower is better):")
        print(_comparison_table(char_rows, word_rows, gpts))

    print(
        f"\nSamples (prompt {args.prompt!r}, seed {args.seed}, temperature {args.temperature:g}; "
        "⏎ = newline):"
    )
    for r in [*char_rows, *word_rows]:
        print(f"  {r.kind} n={r.n}: {_show(r.sample)}")

    written.append(
        plot_ngram_comparison(
            char_rows,
            word_rows,
            out / "ngram_models.png",
            gpts,
        )
    )
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0
