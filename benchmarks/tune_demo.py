"""Pick the demo's recipe: which reaches the lowest validation bits per byte in the demo's own time?

Every candidate trains as `glassgpt demo` does (the built-in corpus and its validation split,
fp32, a wall-clock budget of --minutes of training) and is scored by the demo's own final
evaluation (validation bits per byte). Candidates differ from the demo preset only in the fields
they name, and each names its optimizer and schedule, so a row means the same thing whatever the
preset becomes. Each runs with --seeds seeds (model init and data order), interleaved: seed 0 of
every candidate, then seed 1, ..., so a slow drift of the machine falls on all alike. Rows are
appended to DIR/results.jsonl as they finish (a cut run keeps what it measured); the table at
the end gives every seed's result, their mean, steps, tokens/s (over the whole run) and MFU
(of the last logging window).

The machine must be quiet (nothing else running): budgets are wall-clock.

`--tokens N` budgets training tokens instead of minutes: each candidate stops after N / (its
tokens per step) optimizer steps, and its schedule runs by steps (`--max-steps` of the trainer).
That is what a slower machine gets in the demo's minutes, whatever this machine's speed or load:
the AVX2 laptops glassgpt is aimed at (fp32 matmuls at ~100-140 GFLOP/s, against ~450 here on
oneDNN) trained the 192-wide demo ~0.9M tokens in its 4 minutes (README, "How the demo recipe was
chosen"), roughly 1.91e13 model FLOPs (`--flops`).
Equal tokens is equal time only where a step's cost is its tokens' (matmul-bound, as on a slow
CPU); the steps of a smaller batch cost a little more a token (Muon's per-step work).

`--flops F` budgets model FLOPs instead, for candidates of other shapes: each trains
F / (its model FLOPs per token) tokens, by steps as with --tokens. On a matmul-bound CPU that is
equal time where the shapes reach the same share of the matmul peak, which a smaller model may not
(check its tokens/s on the slow machine, or held to AVX2, before trusting a win).

Usage: python benchmarks/tune_demo.py [--minutes 4 | --tokens N | --flops F] [--seeds 2] [--only NAME ...]
       [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
from pathlib import Path

from glassgpt.entry import prepare_process

prepare_process(os.environ)  # before torch, as the `glassgpt` command does: MKL's fast code on AMD CPUs

from glassgpt.commands.common import positive_float, positive_int  # noqa: E402
from glassgpt.config import RunConfig, preset  # noqa: E402
from glassgpt.runtime import keep_freed_memory  # noqa: E402
from glassgpt.train.pretrain import pretrain  # noqa: E402

# The demo preset as the first round found it. Every candidate is this plus its changes, so a row
# keeps its meaning when the preset moves on (its batch went from 32 to 64 in the seventh round,
# its width from 192 to 96 in the thirteenth).
ROUND_1_DEMO: dict[str, dict] = {
    "model": {"vocab_size": 4096, "d_model": 192, "n_head": 4, "n_kv_head": 4, "mlp_hidden": 512},
    "tokenizer": {"vocab_size": 4096},
    "train": {"batch_size": 32, "optimizer": "adamw", "schedule": "cosine", "lr": 3e-3, "muon_lr": 0.02,
              "decay_fraction": 0.2},
}
ADAMW_COSINE = {"optimizer": "adamw", "schedule": "cosine"}
MUON_WSD = {"optimizer": "muon", "schedule": "wsd"}

# name -> {"model": {...}, "tokenizer": {...}, "train": {...}} changes to the demo preset.
CANDIDATES: dict[str, dict[str, dict]] = {
    "adamw cosine lr 3e-3 (old demo)": {"train": {**ADAMW_COSINE, "lr": 3e-3}},
    "adamw wsd lr 3e-3": {"train": {"optimizer": "adamw", "schedule": "wsd", "lr": 3e-3}},
    "muon wsd 0.02 / adamw 3e-3": {"train": {**MUON_WSD, "muon_lr": 0.02, "lr": 3e-3}},
    "muon wsd 0.04 / adamw 3e-3": {"train": {**MUON_WSD, "muon_lr": 0.04, "lr": 3e-3}},
    "muon wsd 0.02 / adamw 6e-3": {"train": {**MUON_WSD, "muon_lr": 0.02, "lr": 6e-3}},
    "muon wsd, batch 64": {"train": {**MUON_WSD, "batch_size": 64}},
    "muon wsd, batch 16": {"train": {**MUON_WSD, "batch_size": 16}},
    "muon wsd, vocab 2048": {"train": MUON_WSD, "tokenizer": {"vocab_size": 2048}, "model": {"vocab_size": 2048}},
    "muon wsd, vocab 8192": {"train": MUON_WSD, "tokenizer": {"vocab_size": 8192}, "model": {"vocab_size": 8192}},
    "muon wsd, d256": {"train": MUON_WSD, "model": {"d_model": 256}},
    "muon wsd, 6 layers d160": {"train": MUON_WSD, "model": {"n_layer": 6, "d_model": 160, "n_head": 5,
                                                             "n_kv_head": 5}},
    "muon wsd 0.04 / adamw 3e-3, vocab 8192": {"train": {**MUON_WSD, "muon_lr": 0.04, "lr": 3e-3},
                                               "tokenizer": {"vocab_size": 8192}, "model": {"vocab_size": 8192}},
    "muon wsd, context 256 batch 16": {"train": {**MUON_WSD, "batch_size": 16}, "model": {"context_length": 256}},
}
# Second round, each one change to the demo of the first round (muon 0.04 / adamw 3e-3, vocab 8192).
DEMO_1 = {**MUON_WSD, "muon_lr": 0.04, "lr": 3e-3}
VOCAB_8192 = {"tokenizer": {"vocab_size": 8192}, "model": {"vocab_size": 8192}}
CANDIDATES |= {
    "demo 1, batch 16": {"train": {**DEMO_1, "batch_size": 16}, **VOCAB_8192},
    "demo 1, wsd decay 0.4": {"train": {**DEMO_1, "decay_fraction": 0.4}, **VOCAB_8192},
    "demo 1, adamw 6e-3": {"train": {**DEMO_1, "lr": 6e-3}, **VOCAB_8192},
    "demo 1, decay to 0": {"train": {**DEMO_1, "min_lr_ratio": 0.0}, **VOCAB_8192},
}
# Third round: the two changes that helped in the second, together, and a step further.
DEMO_2 = {**DEMO_1, "lr": 6e-3, "decay_fraction": 0.4}
CANDIDATES |= {
    "demo 2 (demo 1, adamw 6e-3, wsd decay 0.4)": {"train": DEMO_2, **VOCAB_8192},
    "demo 2, adamw 1e-2": {"train": {**DEMO_2, "lr": 1e-2}, **VOCAB_8192},
    "demo 2, muon 0.06": {"train": {**DEMO_2, "muon_lr": 0.06}, **VOCAB_8192},
    "demo 2, wsd decay 0.6": {"train": {**DEMO_2, "decay_fraction": 0.6}, **VOCAB_8192},
    "demo 2, adamw 2e-2": {"train": {**DEMO_2, "lr": 2e-2}, **VOCAB_8192},
    "demo 2, adamw 3e-2": {"train": {**DEMO_2, "lr": 3e-2}, **VOCAB_8192},
}
# Fourth round, each one change to the demo preset as it is now (demo 2, adamw 3e-2).
DEMO_3 = {**DEMO_2, "lr": 3e-2}
CANDIDATES |= {
    "demo 3 (demo 2, adamw 3e-2)": {"train": DEMO_3, **VOCAB_8192},
    "demo 3, adamw 5e-2": {"train": {**DEMO_3, "lr": 5e-2}, **VOCAB_8192},
    "demo 3, untied": {"train": DEMO_3, "tokenizer": VOCAB_8192["tokenizer"],
                       "model": {**VOCAB_8192["model"], "tie_embeddings": False}},
    "demo 3, warmup 10": {"train": {**DEMO_3, "warmup_steps": 10}, **VOCAB_8192},
}
# Fifth round: two of the candidates not yet measured on the demo as it is now.
CANDIDATES |= {
    "demo 3, zero init": {"train": {**DEMO_3, "residual_init": "zero"}, **VOCAB_8192},
    "demo 3, context 256 batch 16": {"train": {**DEMO_3, "batch_size": 16}, "tokenizer": VOCAB_8192["tokenizer"],
                                     "model": {**VOCAB_8192["model"], "context_length": 256}},
}

# Sixth round: training's float32 matmuls on oneDNN (~1.7x the tokens/s of the rounds above) buy
# ~640 steps in the 4 minutes instead of ~350: do a wider, deeper or larger-batch model pay now?
CANDIDATES |= {
    "demo 3, d256": {"train": DEMO_3, "tokenizer": VOCAB_8192["tokenizer"],
                     "model": {**VOCAB_8192["model"], "d_model": 256}},
    "demo 3, 6 layers": {"train": DEMO_3, "tokenizer": VOCAB_8192["tokenizer"],
                         "model": {**VOCAB_8192["model"], "n_layer": 6}},
    "demo 3, batch 64": {"train": {**DEMO_3, "batch_size": 64}, **VOCAB_8192},
    "demo 3, vocab 16384": {"train": DEMO_3, "tokenizer": {"vocab_size": 16384}, "model": {"vocab_size": 16384}},
}

# Seventh round: batch 64 won the sixth (-0.025 and -0.029); one step further, and a shorter
# warmup for its fewer (~290) steps.
DEMO_4 = {**DEMO_3, "batch_size": 64}
CANDIDATES |= {
    "demo 4 (demo 3, batch 64)": {"train": DEMO_4, **VOCAB_8192},
    "demo 4, batch 128": {"train": {**DEMO_4, "batch_size": 128}, **VOCAB_8192},
    "demo 4, warmup 20": {"train": {**DEMO_4, "warmup_steps": 20}, **VOCAB_8192},
}
# Eighth round: a slower machine's 4 minutes (`--tokens 901120`, 110 steps of batch 64), where the
# demo as tuned above lost to the 8-gram; its 50 warmup steps are half of such a run.
CANDIDATES |= {
    "demo 4, warmup 10": {"train": {**DEMO_4, "warmup_steps": 10}, **VOCAB_8192},
    "demo 4, batch 16, warmup 10": {"train": {**DEMO_4, "batch_size": 16, "warmup_steps": 10}, **VOCAB_8192},
}
# Ninth round: batch 32 with 10 warmup steps won the eighth at 0.9M tokens (1.934) but still lost
# to the 8-gram (1.920) there; two more changes for so short a run.
SLOW_1 = {**DEMO_3, "warmup_steps": 10}
CANDIDATES |= {
    "slow 1 (demo 3, warmup 10), qk-clip 50": {"train": {**SLOW_1, "qk_clip": 50.0}, **VOCAB_8192},
    "slow 1, wsd decay 0.6": {"train": {**SLOW_1, "decay_fraction": 0.6}, **VOCAB_8192},
    "slow 1, qk-clip 50, wsd decay 0.6": {"train": {**SLOW_1, "qk_clip": 50.0, "decay_fraction": 0.6}, **VOCAB_8192},
}

# Tenth round: on a slow machine a smaller model trains more tokens in the same minutes. Budgeted
# by model FLOPs (`--flops 1.91e13`: the demo's 0.9M tokens), each one change to "demo 3, warmup 10"
# (the recipe the demo then took there); the output layer is 44% of the demo's FLOPs a token.
D128 = {"tokenizer": VOCAB_8192["tokenizer"], "model": {**VOCAB_8192["model"], "d_model": 128, "mlp_hidden": 0}}
D96 = {"tokenizer": VOCAB_8192["tokenizer"],
       "model": {**VOCAB_8192["model"], "d_model": 96, "n_head": 3, "n_kv_head": 3, "mlp_hidden": 0}}
CANDIDATES |= {
    "slow 1, vocab 4096": {"train": SLOW_1, "tokenizer": {"vocab_size": 4096}, "model": {"vocab_size": 4096}},
    "slow 1, d160": {"train": SLOW_1, "tokenizer": VOCAB_8192["tokenizer"],
                     "model": {**VOCAB_8192["model"], "d_model": 160, "mlp_hidden": 0}},
    "slow 1, d128": {"train": SLOW_1, **D128},
    "slow 1, 3 layers": {"train": SLOW_1, "tokenizer": VOCAB_8192["tokenizer"],
                         "model": {**VOCAB_8192["model"], "n_layer": 3}},
}
# Eleventh round: d128 won the tenth (1.874 against 1.934, with 1.57M tokens for 0.9M); narrower
# still, and depth or heads at that width.
CANDIDATES |= {
    "slow 1, d96": {"train": SLOW_1, **D96},
    "slow 1, d128, 3 layers": {"train": SLOW_1, **D128, "model": {**D128["model"], "n_layer": 3}},
    "slow 1, d128, 6 layers": {"train": SLOW_1, **D128, "model": {**D128["model"], "n_layer": 6}},
    "slow 1, d128, 2 heads": {"train": SLOW_1, **D128, "model": {**D128["model"], "n_head": 2, "n_kv_head": 2}},
}
# Twelfth round: d96 won the eleventh (2.4M tokens for the demo's 0.9M); its depth, a narrower
# model still, a smaller vocabulary where the output layer is 59% of a token's FLOPs, batch 64.
CANDIDATES |= {
    "slow 1, d96, 3 layers": {"train": SLOW_1, **D96, "model": {**D96["model"], "n_layer": 3}},
    "slow 1, d96, 6 layers": {"train": SLOW_1, **D96, "model": {**D96["model"], "n_layer": 6}},
    "slow 1, d64": {"train": SLOW_1, **D96, "model": {**D96["model"], "d_model": 64, "n_head": 2, "n_kv_head": 2}},
    "slow 1, d96, vocab 4096": {"train": SLOW_1, "tokenizer": {"vocab_size": 4096},
                                "model": {**D96["model"], "vocab_size": 4096}},
    "slow 1, d96, batch 64": {"train": {**SLOW_1, "batch_size": 64}, **D96},
}
# Thirteenth round: do narrower models win at the demo's own 4 minutes on this fast machine too
# (~2.5M tokens of the preset, at batch 64)?
CANDIDATES |= {
    "demo 4, d128": {"train": DEMO_4, **D128},
    "demo 4, d96": {"train": DEMO_4, **D96},
}

def tokens_per_step(config: RunConfig) -> int:
    return config.train.batch_size * config.train.grad_accum * config.model.context_length


def candidate_config(changes: dict[str, dict], minutes: float, seed: int, tokens: int = 0,
                     flops: float = 0.0) -> RunConfig:
    """The demo preset with `changes`, fp32, for `minutes` of training, or (`tokens` > 0) for as
    many steps as make `tokens` training tokens, or (`flops` > 0) as many as make `flops` model
    FLOPs (training tokens x the model's FLOPs per token), with no time limit."""
    base = preset("demo")
    train = {"dtype": "fp32", "time_budget_min": 0.0 if tokens or flops else minutes, "seed": seed, "save_every": 10**6,
             **ROUND_1_DEMO["train"], **changes.get("train", {})}
    config = dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, **{**ROUND_1_DEMO["model"], **changes.get("model", {})}),
        tokenizer=dataclasses.replace(base.tokenizer, **{**ROUND_1_DEMO["tokenizer"], **changes.get("tokenizer", {})}),
        train=dataclasses.replace(base.train, **train),
    )
    if flops:
        tokens = round(flops / config.model.flops_per_token())
    if tokens:
        config = dataclasses.replace(config, train=dataclasses.replace(
            config.train, max_steps=max(1, round(tokens / tokens_per_step(config))), eval_every=10**6))
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=preset("demo").train.time_budget_min,
                        help="training minutes per run (default: the demo's)")
    parser.add_argument("--tokens", type=positive_int, default=0,
                        help="budget training tokens instead of minutes (steps = tokens / tokens per step)")
    parser.add_argument("--flops", type=positive_float, default=0.0,
                        help="budget model FLOPs instead (tokens = FLOPs / the candidate's FLOPs per token)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from this one (to add seeds later)")
    parser.add_argument("--only", nargs="*", default=None, help="candidate names (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="runs and results.jsonl (default: a temp folder)")
    args = parser.parse_args()
    names = args.only or list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidates {unknown}; choose from {list(CANDIDATES)}")
    keep_freed_memory()  # as the glassgpt command does: without it the demo made ~20% fewer steps
    out = args.out or Path(tempfile.mkdtemp(prefix="tune_demo_"))
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"  # tokenizers and token caches are shared: only training time is budgeted
    results: dict[str, list[dict]] = {n: [] for n in names}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for i, name in enumerate(names):
            config = candidate_config(CANDIDATES[name], args.minutes, seed, args.tokens, args.flops)
            result = pretrain(config, out / f"c{i}-s{seed}", cache_dir=cache, show_progress=False, log=lambda _: None)
            budget = ({"flops": args.flops} if args.flops else {"tokens": args.tokens} if args.tokens
                      else {"minutes": args.minutes})
            row = {"candidate": name, "seed": seed, **budget, "params": result.num_parameters,
                   "steps": result.step, "tokens": result.step * tokens_per_step(config),
                   "tokens_per_s": round(result.step * tokens_per_step(config) / max(result.elapsed_s, 1e-9)),
                   "mfu": round(result.mfu or 0.0, 3), "val_bpb": round(result.val.bpb, 4)}
            results[name].append(row)
            with open(out / "results.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)

    budget = (f"{args.flops:.3g} model FLOPs" if args.flops else f"{args.tokens:,} training tokens" if args.tokens
              else f"{args.minutes:g} minutes of training")
    print(f"\n{budget} per run, {args.seeds} seeds; lower is better\n")
    print("| candidate | parameters | steps | tokens | tokens/s | MFU | val bits/byte per seed | mean |")
    print("|---|---|---|---|---|---|---|---|")
    for name in sorted(names, key=lambda n: statistics.mean(r["val_bpb"] for r in results[n])):
        rows = results[name]
        print(f"| {name} | {rows[0]['params']:,} | {round(statistics.mean(r['steps'] for r in rows))} | "
              f"{statistics.mean(r['tokens'] for r in rows) / 1e6:.2f}M | "
              f"{round(statistics.mean(r['tokens_per_s'] for r in rows)):,} | "
              f"{statistics.mean(r['mfu'] for r in rows):.0%} | "
              f"{' / '.join(format(r['val_bpb'], '.3f') for r in rows)} | "
              f"{statistics.mean(r['val_bpb'] for r in rows):.3f} |")


if __name__ == "__main__":
    main()
