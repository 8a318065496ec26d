"""Generating past the context: a rolling KV cache against sliding the window, on a trained model.

    python benchmarks/long_generation.py [--model RUN] [--tokens N] [--repeats R] [--quick]

A rotary (Llama-style) model's KV cache rolls past the context (`glassgpt.model.KVCache`): each
new token overwrites the oldest position, so it costs one position of work and sees the last
`context` positions. The alternative, what the engine still does for learned positions (GPT-2),
slides the window: once it is full, the last 3/4 of the context is read in again as a fresh
prompt, so every context/4 new tokens cost a prefill of 3/4 of the context.

Speed: batch-1 sampling of N new tokens (default 4 x the context) after a short prompt, both
ways (`Engine.rolling` on and off), interleaved, median tokens/s; and the positions the model
ran per new token (counted by a hook on the model, so it is what really ran).

Quality: bits per byte of N tokens of validation text (the built-in corpus' held-out part, after
its first `context` tokens) read teacher-forced, three ways: rolling (the real cache, a token at a
time), sliding (the engine's windows), and the reference, a fresh forward pass over exactly the
`context` tokens before each token (one pass per token: what a model "should" see; slow). Rolling
keys were made when their tokens were new, from their own earlier windows, and the oldest visible
token is never a window's first: the reference shows what that costs.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `glassgpt` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glassgpt.entry import prepare_process  # noqa: E402

prepare_process(os.environ)  # before torch, as the `glassgpt` command does: MKL's fast code on AMD CPUs

import torch  # noqa: E402

from benchmarks.common import cpu_name, interleaved, markdown_table  # noqa: E402
from glassgpt.data.corpus import builtin_documents, split_documents  # noqa: E402
from glassgpt.engine import Engine, SamplingConfig  # noqa: E402
from glassgpt.errors import GlassError  # noqa: E402
from glassgpt.evaluate import token_byte_lengths  # noqa: E402
from glassgpt.model import GPT, KVCache  # noqa: E402
from glassgpt.runs import load_run, shipped_model  # noqa: E402


def sliding_starts(n_tokens: int, context: int) -> list[int]:
    """For each i in 1..n_tokens-1, where the engine's sliding window starts when it predicts
    token i from tokens[:i]: it grows until it would hold more than `context` tokens, then
    restarts as the last 3/4 of the context."""
    starts, start = [], 0
    for i in range(1, n_tokens):
        if i - start > context:
            start = i - 3 * context // 4
        starts.append(start)
    return starts


@torch.no_grad()
def sliding_logprobs(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[i] | the sliding window before i) for i = 1..len-1: one pass per window."""
    context = model.config.context_length
    starts = sliding_starts(len(ids), context)
    out = torch.empty(len(ids) - 1)
    i = 1
    while i < len(ids):
        start, end = starts[i - 1], i
        while end < len(ids) and starts[end - 1] == start:
            end += 1  # targets i..end-1 share the window that starts at `start`
        logp = model(ids[None, start:end - 1]).logits[0].float().log_softmax(-1)  # (end-1-start, V)
        rows = torch.arange(i - 1 - start, end - 1 - start)
        out[i - 1:end - 1] = logp[rows, ids[i:end]]
        i = end
    return out


@torch.no_grad()
def rolling_logprobs(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[i] | what the rolling cache holds) for i = 1..len-1: a prefill of the first
    context, then one token at a time through the real cache."""
    context = model.config.context_length
    cache = KVCache(model.config, 1, context, rolling=True)
    first = min(context, len(ids) - 1)
    logits = [model(ids[None, :first], kv_cache=cache).logits[0]]
    logits += [model(ids[None, t:t + 1], kv_cache=cache).logits[0] for t in range(first, len(ids) - 1)]
    logp = torch.cat(logits).float().log_softmax(-1)
    return logp[torch.arange(len(ids) - 1), ids[1:]]


@torch.no_grad()
def full_window_logprobs(model: GPT, ids: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """log p(ids[i] | exactly the `context` tokens before it, read fresh) for i = context..len-1."""
    context = model.config.context_length
    targets = list(range(context, len(ids)))
    out = []
    for b in range(0, len(targets), batch):
        chunk = targets[b:b + batch]
        windows = torch.stack([ids[i - context:i] for i in chunk])  # (b, context)
        logp = model(windows).logits[:, -1].float().log_softmax(-1)
        out.append(logp[torch.arange(len(chunk)), ids[chunk]])
    return torch.cat(out)


def validation_ids(run, n_tokens: int) -> torch.Tensor:
    """bos + the first `n_tokens` tokens of the longest held-out document of the built-in corpus."""
    longest = max(split_documents(builtin_documents()).val, key=lambda doc: len(doc.text))
    ids = [run.tokenizer.bos_id, *run.tokenizer.encode(longest.text[:n_tokens * 8])][:n_tokens + 1]
    if len(ids) < n_tokens + 1:
        raise GlassError(f"the validation text has only {len(ids) - 1} tokens; ask for fewer")
    return torch.tensor(ids)


def bits_per_byte(logprobs: torch.Tensor, targets: torch.Tensor, byte_lengths: torch.Tensor) -> float:
    return float(-logprobs.double().sum() / math.log(2) / byte_lengths[targets].sum())


def positions_per_token(engine: Engine, prompt: list[int], sampling: SamplingConfig) -> float:
    """Positions the model ran (prefill included) per new token, counted by a forward hook."""
    ran: list[int] = []
    hook = engine.model.register_forward_pre_hook(lambda _, args: ran.append(args[0].numel()))
    try:
        engine.generate_ids(prompt, sampling)
    finally:
        hook.remove()
    return sum(ran) / sampling.max_new_tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a run folder with a rotary model (default: the shipped model)")
    parser.add_argument("--tokens", type=int, default=0, help="new tokens per generation (default: 4 x context)")
    parser.add_argument("--repeats", type=int, default=5, help="timed generations per way (median)")
    parser.add_argument("--quick", action="store_true", help="short runs, one repeat (seconds; for tests)")
    args = parser.parse_args(argv)
    if args.tokens < 0 or args.repeats < 1:
        parser.error("--tokens must be >= 0 (0 = 4 x context) and --repeats >= 1")
    try:
        path = args.model or shipped_model()
        if path is None:
            raise GlassError("no model shipped with this install: give --model RUN")
        run = load_run(path)
        if run.config.model.position != "rope":
            raise GlassError(f"{path} has learned positions: only a rotary model's cache can roll")
    except GlassError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    model, context = run.model.eval(), run.config.model.context_length
    n_new = args.tokens or (3 * context // 2 if args.quick else 4 * context)
    repeats = 1 if args.quick else args.repeats
    engine = Engine(model, run.tokenizer)
    prompt = [run.tokenizer.bos_id, *run.tokenizer.encode("It is a truth universally acknowledged")]
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=n_new, seed=0, stop_at_eos=False)
    print(f"{cpu_name()}, {torch.get_num_threads()} threads; model {path}: context {context}, "
          f"{model.num_parameters():,} parameters; {n_new} new tokens, batch 1, {repeats} repeats")

    def tokens_per_s(rolling: bool) -> float:
        engine.rolling = rolling
        start = time.perf_counter()
        engine.generate_ids(prompt, sampling)
        return n_new / (time.perf_counter() - start)

    ways = {"rolling cache": True, "sliding window": False}
    work = {}
    for name, rolling in ways.items():
        engine.rolling = rolling
        work[name] = positions_per_token(engine, prompt, sampling)
    rates = interleaved({name: (lambda r=rolling: tokens_per_s(r)) for name, rolling in ways.items()}, repeats)

    ids = validation_ids(run, context + n_new)
    byte_lengths = token_byte_lengths(run.tokenizer)
    rolling, sliding, fresh = rolling_logprobs(model, ids), sliding_logprobs(model, ids), full_window_logprobs(model, ids)
    # Checks: until the context is full the three ways see the same tokens, and the first token
    # after it the rolling cache predicts from exactly the fresh window.
    checks = {"rolling = sliding within the context": torch.allclose(rolling[:context], sliding[:context], atol=1e-4),
              "rolling = fresh at the first full window": abs(float(rolling[context - 1] - fresh[0])) < 1e-4}
    scored = slice(context - 1, None)  # targets context..end: every way has a full context behind them
    targets = ids[context:]
    quality = {
        "rolling cache": bits_per_byte(rolling[scored], targets, byte_lengths),
        "sliding window": bits_per_byte(sliding[scored], targets, byte_lengths),
        "fresh full window (reference)": bits_per_byte(fresh, targets, byte_lengths),
    }
    reference = quality["fresh full window (reference)"]
    rows = []
    for name, bpb in quality.items():
        rate = rates.get(name)
        rows.append([name, f"{rate.median:.1f}" if rate else "-",
                     f"{rate.median / rates['sliding window'].median:.2f}x" if rate else "-",
                     f"{work[name]:.2f}" if name in work else f"{context:.2f}",
                     f"{bpb:.4f}", f"{bpb - reference:+.4f}"])
    print()
    print(markdown_table(["way", "tokens/s", "vs sliding", "positions run per new token",
                          f"bits per byte ({len(targets)} val tokens)", "vs reference"], rows))
    print("\ntokens/s spread ((max - min) / median over the repeats): "
          + ", ".join(f"{name} {rate.spread:.0%}" for name, rate in rates.items()))
    for name, ok in checks.items():
        print(f"check {'ok' if ok else 'FAILED'}: {name}", file=sys.stdout if ok else sys.stderr)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
