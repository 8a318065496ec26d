"""`glassgpt train`: train a GPT on the built-in corpus or your text, or resume a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from glassgpt.commands.common import (
    add_device_option,
    cache_dir,
    distributed_from_env,
    positive_float,
    positive_int,
)
from glassgpt.config import (
    MATMUL_SETTINGS,
    PRESETS,
    REPEAT_SOURCES,
    RESIDUAL_INITS,
    RunConfig,
    preset,
)
from glassgpt.errors import GlassError
from glassgpt.runs import RunFolder
from glassgpt.runtime import destroy_process_group, init_process_group, resolve_device
from glassgpt.train.pretrain import pretrain

# CLI flag -> (config section, field). Flags default to None so only explicit ones override.
MODEL_FLAGS = {"context": "context_length", "layers": "n_layer", "heads": "n_head",
               "kv_heads": "n_kv_head", "d_model": "d_model", "mlp_hidden": "mlp_hidden"}
TRAIN_FLAGS = {"max_steps": "max_steps", "time_budget": "time_budget_min", "batch_size": "batch_size",
               "grad_accum": "grad_accum", "lr": "lr", "warmup_steps": "warmup_steps",
               "optimizer": "optimizer", "muon_lr": "muon_lr", "muon_weight_decay": "muon_weight_decay",
               "weight_decay": "weight_decay", "schedule": "schedule",
               "decay_fraction": "decay_fraction", "qk_clip": "qk_clip", "repeat_fraction": "repeat_fraction",
               "repeat_source": "repeat_source", "repeat_min_period": "repeat_min_period",
               "repeat_max_period": "repeat_max_period", "eval_every": "eval_every", "log_every": "log_every",
               "save_every": "save_every", "dtype": "dtype", "compile": "compile", "matmul": "matmul", "seed": "seed",
               "residual_init": "residual_init"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a GPT on text (default: the built-in corpus)",
        description="Train a GPT from scratch, or continue one with --resume. Several processes: "
                    "torchrun --nproc_per_node N -m glassgpt train ... (see README). Presets: "
                    + ", ".join(f"{k} ({v.model.num_parameters() / 1e6:.1f}M params)" for k, v in PRESETS.items()),
    )
    p.add_argument("--data", help="text file, folder of .txt files, or glob (default: built-in corpus)")
    p.add_argument("--out", type=Path, help="run folder to write (default: runs/PRESET)")
    p.add_argument("--preset", default="demo", choices=list(PRESETS), help="starting configuration (default: demo)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--init-from", type=Path, metavar="RUN",
                   help="start from RUN's weights and tokenizer with a fresh optimizer and schedule (continued "
                        "pretraining); its recipe and data unless you change them")
    add_budget_options(p)
    g = p.add_argument_group("model (not with --resume)")
    g.add_argument("--tokenizer", choices=["bpe", "char", "gpt2"], help="tokenizer kind")
    g.add_argument("--vocab-size", type=positive_int, help="BPE vocabulary size, special tokens included")
    g.add_argument("--context", type=positive_int, help="context length in tokens")
    g.add_argument("--layers", type=positive_int)
    g.add_argument("--heads", type=positive_int)
    g.add_argument("--kv-heads", type=positive_int, help="fewer than --heads = grouped-query attention")
    g.add_argument("--d-model", type=positive_int, help="embedding width")
    g.add_argument("--mlp-hidden", type=positive_int, metavar="N",
                   help="MLP width (default: 8/3 x d_model rounded up to a multiple of 64 for SwiGLU, 4 x for GELU)")
    g.add_argument("--untied", action="store_true", help="separate input and output embeddings")
    g.add_argument("--residual-init", choices=RESIDUAL_INITS,
                   help="how the projections into the residual stream start: scaled (GPT-2's init, the "
                        "default) or zero (each block starts as the identity)")
    add_training_options(p)
    g = p.add_argument_group("repeated windows (pretraining only)")
    g.add_argument("--repeat-fraction", type=float, metavar="F",
                   help="share of training windows that are a passage repeated, so the model learns to "
                        "copy from its context (0 = off)")
    g.add_argument("--repeat-source", choices=REPEAT_SOURCES,
                   help="what a repeated window repeats: a passage of the text, its tokens taken from scattered "
                        "places, or random token ids (only the repeats are targets); the last two only copying "
                        "predicts (default: passage)")
    g.add_argument("--repeat-min-period", type=positive_int, metavar="TOKENS",
                   help="shortest repeated passage (default: a quarter of the context, or the longest if shorter)")
    g.add_argument("--repeat-max-period", type=positive_int, metavar="TOKENS",
                   help="longest repeated passage (default: half the context, or the shortest if longer); short passages said many "
                        "times are where copying starts")
    add_device_option(p)
    p.add_argument("--fsdp", action="store_true",
                   help="with torchrun on GPUs: shard weights and optimizer state across processes (FSDP2) "
                        "instead of copying them (DDP)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    p.set_defaults(func=run)


def add_budget_options(p: argparse.ArgumentParser) -> None:
    """--time-budget and --max-steps (shared by every training command)."""
    g = p.add_argument_group("budget")
    g.add_argument("--time-budget", type=positive_float, metavar="MINUTES", help="stop after this much training time")
    g.add_argument("--max-steps", type=positive_int, metavar="N", help="stop after N optimizer steps")


def add_training_options(p: argparse.ArgumentParser) -> None:
    """The training recipe's flags (shared by every training command); see `TRAIN_FLAGS`."""
    g = p.add_argument_group("training")
    g.add_argument("--batch-size", type=positive_int, help="sequences per micro-batch")
    g.add_argument("--grad-accum", type=positive_int, help="micro-batches per optimizer step")
    g.add_argument("--optimizer", choices=["adamw", "muon"],
                   help="adamw, or muon for the blocks' matrices with adamw for the rest (default: adamw)")
    g.add_argument("--lr", type=positive_float, help="peak learning rate (AdamW's)")
    g.add_argument("--muon-lr", type=positive_float, help="peak learning rate of Muon's matrices (default: 0.02)")
    g.add_argument("--muon-weight-decay", type=float, metavar="WD",
                   help="decoupled weight decay of Muon's matrices; it bounds their size, which later "
                        "fine-tuning needs (README: 'The model that ships')")
    g.add_argument("--weight-decay", type=float, metavar="WD",
                   help="AdamW's decoupled weight decay (matrices and embeddings, never norm gains)")
    g.add_argument("--schedule", choices=["cosine", "wsd"],
                   help="cosine decay, or wsd: warmup, stable peak, linear decay at the end (default: cosine)")
    g.add_argument("--decay-fraction", type=positive_float, metavar="F",
                   help="wsd: decay over the last F of the budget, 0 < F <= 1 (default: 0.2)")
    g.add_argument("--warmup-steps", type=int)
    g.add_argument("--qk-clip", type=float, metavar="LOGIT",
                   help="after each step, scale back the query/key weights of heads whose attention "
                        "logits passed LOGIT (QK-clip; 0 = off)")
    g.add_argument("--eval-every", type=positive_int, metavar="N", help="validate every N steps (and at the end)")
    g.add_argument("--log-every", type=positive_int, metavar="N", help="record train loss and speed every N steps")
    g.add_argument("--save-every", type=positive_int, metavar="N", help="checkpoint every N steps (and at the end)")
    g.add_argument("--dtype", choices=["auto", "bf16", "fp32"], help="auto = bf16 where measured faster")
    g.add_argument("--compile", choices=["auto", "on", "off"], help="torch.compile (auto = on GPUs only; train --preset small sets on)")
    g.add_argument("--matmul", choices=list(MATMUL_SETTINGS),
                   help="float32 matmul kernel for CPU training: auto = oneDNN where measured faster than "
                        "PyTorch's own (MKL leaves AVX-512 unused on AMD CPUs); aten or onednn to force one")
    g.add_argument("--seed", type=int)


def train_changes(args: argparse.Namespace) -> dict:
    """The training-recipe fields the user set explicitly (as `TrainConfig` fields)."""
    return _explicit(args, TRAIN_FLAGS)


def _explicit(args: argparse.Namespace, flags: dict[str, str]) -> dict:
    # getattr with a default: sft and rl have no pretraining-only flags (--repeat-*).
    return {field: getattr(args, flag, None) for flag, field in flags.items() if getattr(args, flag, None) is not None}


def build_config(args: argparse.Namespace) -> RunConfig:
    """The preset (or the saved config when resuming) with the explicit flags applied."""
    model_changes = _explicit(args, MODEL_FLAGS)
    if args.untied:
        model_changes["tie_embeddings"] = False
    tokenizer_changes = {k: v for k, v in (("kind", args.tokenizer), ("vocab_size", args.vocab_size)) if v is not None}
    changes = train_changes(args)
    if args.residual_init is not None and (args.resume or args.init_from is not None):
        raise GlassError("--residual-init sets how a new model starts: drop it with --resume or --init-from")
    if args.resume:
        changes_model = bool(model_changes or tokenizer_changes or args.data)
        return RunFolder(args.out).load_config().for_resume(train=changes, changes_model=changes_model)
    if args.init_from is not None:
        if model_changes or tokenizer_changes:
            raise GlassError("--init-from keeps RUN's model and tokenizer: drop the model/tokenizer options")
        parent = RunFolder(args.init_from).load_config()
        return parent.for_finetune(stage="pretrain", parent=str(args.init_from), train=parent.train.with_budget(**changes),
                                   data=args.data if args.data is not None else parent.data)
    return preset(args.preset).with_overrides(model=model_changes, tokenizer=tokenizer_changes,
                                              train=changes, data=args.data)


def run(args: argparse.Namespace) -> int:
    if args.resume and args.out is None:
        raise GlassError("--resume needs --out RUN: the run folder to continue")
    if args.resume and args.init_from is not None:
        raise GlassError("--resume continues --out's own run; --init-from starts a new one: give one of them")
    args.out = args.out or Path("runs") / args.preset
    config = build_config(args)
    distributed = distributed_from_env()
    device = resolve_device(args.device, distributed)
    init_process_group(distributed, device)
    finished = False
    try:
        result = pretrain(config, args.out, resume=args.resume, cache_dir=cache_dir(), device=device,
                          distributed=distributed, fsdp=args.fsdp, show_progress=not args.no_progress)
        finished = True
    finally:
        destroy_process_group(finished)
    if distributed.is_main:
        if result.val is not None:
            print(f"final validation: loss {result.val.loss:.4f}, {result.val.bpb:.4f} bits per byte")
        print(f"try it: glassgpt generate --model {args.out} \"Once upon a time\"")
    return 0
