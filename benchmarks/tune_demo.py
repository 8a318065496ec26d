"""Pick the demo preset: which shape reaches the lowest validation bits per byte in a fixed time?

The machine this ran on was shared, so wall-clock budgets would be unfair between candidates.
Instead: (1) measure each candidate's training speed, interleaved so they see the same load;
(2) give each the same *time* share as a step count (steps = share * its speed / tokens per
step); (3) train with the cosine schedule over those steps and compare final validation bits
per byte. Usage: python benchmarks/tune_demo.py [--reference-tokens 400000] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from glassgpt.config import ModelConfig, RunConfig, TrainConfig, preset
from glassgpt.model import GPT
from glassgpt.train.optim import make_optimizer
from glassgpt.train.pretrain import pretrain

CANDIDATES = {
    "d192-L4-ctx128-b32 (lr 3e-3)": dict(d_model=192, n_layer=4, n_head=4, context_length=128, batch_size=32, lr=3e-3),
    "d128-L4-ctx128-b32 (lr 3e-3)": dict(d_model=128, n_layer=4, n_head=4, context_length=128, batch_size=32, lr=3e-3),
    "d256-L4-ctx128-b32 (lr 3e-3)": dict(d_model=256, n_layer=4, n_head=4, context_length=128, batch_size=32, lr=3e-3),
    "d192-L4-ctx128-b16 (lr 3e-3)": dict(d_model=192, n_layer=4, n_head=4, context_length=128, batch_size=16, lr=3e-3),
    "d192-L4-ctx128-b32 (lr 6e-3)": dict(d_model=192, n_layer=4, n_head=4, context_length=128, batch_size=32, lr=6e-3),
}


def candidate_config(spec: dict) -> RunConfig:
    base = preset("demo")
    model = dataclasses.replace(base.model, d_model=spec["d_model"], n_layer=spec["n_layer"], n_head=spec["n_head"],
                                n_kv_head=spec["n_head"], context_length=spec["context_length"])
    train_cfg = dataclasses.replace(base.train, batch_size=spec["batch_size"], lr=spec["lr"], time_budget_min=0.0,
                                    dtype="fp32")
    return dataclasses.replace(base, model=model, train=train_cfg)


def tokens_per_second(model_config: ModelConfig, train_config: TrainConfig) -> float:
    model = GPT(model_config)
    optimizer = make_optimizer(model, train_config)
    ids = torch.randint(0, model_config.vocab_size, (train_config.batch_size, model_config.context_length))

    def step() -> None:
        model(ids, targets=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    start = time.perf_counter()
    for _ in range(3):
        step()
    return 3 * ids.numel() / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-tokens", type=int, default=400_000,
                        help="tokens the first candidate trains on; the others get the same time share")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    configs = {name: candidate_config(spec) for name, spec in CANDIDATES.items()}
    speeds: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(3):  # interleaved, so every candidate sees the same background load
        for name, config in configs.items():
            speeds[name].append(tokens_per_second(config.model, config.train))
    speed = {name: sorted(v)[1] for name, v in speeds.items()}
    reference = next(iter(configs))
    share_s = args.reference_tokens / speed[reference]
    out = args.out or Path(tempfile.mkdtemp(prefix="tune_demo_"))
    results = []
    for name, config in configs.items():
        tokens_per_step = config.train.batch_size * config.model.context_length
        steps = max(20, round(share_s * speed[name] / tokens_per_step))
        config = dataclasses.replace(config, train=dataclasses.replace(
            config.train, max_steps=steps, eval_every=10**6, warmup_steps=min(50, steps // 10)))
        result = pretrain(config, out / name.split()[0] / name.split()[-1].strip("()"), show_progress=False,
                       log=lambda _: None)
        row = {"candidate": name, "params": result.num_parameters, "tokens_per_s": round(speed[name]),
               "steps": steps, "val_bpb": round(result.val.bpb, 4)}
        results.append(row)
        print(json.dumps(row), flush=True)
    print("\n| candidate | parameters | relative speed | steps | val bits/byte |\n|---|---|---|---|---|")
    for row in sorted(results, key=lambda r: r["val_bpb"]):
        print(f"| {row['candidate']} | {row['params']:,} | {row['tokens_per_s'] / speed[reference]:.2f} | "
              f"{row['steps']} | {row['val_bpb']:.3f} |")


if __name__ == "__main__":
    main()
