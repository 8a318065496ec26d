"""Optimizers and schedules: Muon + AdamW ownership, Muon's orthogonalised step, resuming a Muon
run exactly, and the warmup-stable-decay schedule."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from glassgpt.config import ModelConfig, TrainConfig, preset
from glassgpt.data.batches import WindowSampler
from glassgpt.errors import GlassError
from glassgpt.matmul import onednn_available
from glassgpt.model import GPT, max_attention_logits
from glassgpt.runs import RunFolder, TrainerState, load_run
from glassgpt.runtime import full_optimizer_state, load_full_state
from glassgpt.train import optim
from glassgpt.train.loop import LoopHooks, run_loop
from glassgpt.train.optim import (
    CombinedOptimizer,
    Muon,
    clip_attention_logits,
    learning_rate,
    lr_multiplier,
    make_optimizer,
    set_matmul_kernel,
    track_attention_logits,
)
from glassgpt.train.pretrain import next_token_loss, pretrain

QUIET = {"show_progress": False, "log": lambda _: None}
MODEL = ModelConfig(vocab_size=64, context_length=16, n_layer=2, n_head=4, n_kv_head=2, d_model=32)
MUON = TrainConfig(optimizer="muon", max_steps=4, warmup_steps=0, eval_every=10, log_every=10, save_every=10)
HIDDEN_SUFFIXES = ("attn.qkv.weight", "attn.out.weight", "mlp.gate_up.weight", "mlp.down.weight")


def _names(model: GPT, params: list[torch.Tensor]) -> set[str]:
    by_id = {id(p): name for name, p in model.named_parameters()}
    return {by_id[id(p)] for p in params}


@pytest.mark.parametrize("tied", [True, False])
def test_muon_owns_the_hidden_matrices_and_adamw_everything_else(tied: bool):
    model = GPT(dataclasses.replace(MODEL, tie_embeddings=tied))
    optimizer = make_optimizer(model, MUON)
    assert isinstance(optimizer, CombinedOptimizer)
    adamw, muon = optimizer.optimizers
    assert isinstance(adamw, torch.optim.AdamW) and isinstance(muon, torch.optim.Muon)
    muon_names = _names(model, [p for g in muon.param_groups for p in g["params"]])
    adamw_names = _names(model, [p for g in adamw.param_groups for p in g["params"]])
    expected = {f"blocks.{i}.{suffix}" for i in range(MODEL.n_layer) for suffix in HIDDEN_SUFFIXES}
    assert muon_names == expected
    every = {name for name, _ in model.named_parameters()}
    assert muon_names | adamw_names == every and not muon_names & adamw_names  # each in exactly one
    assert {"embed.weight", "final_norm.weight"} <= adamw_names
    assert ("lm_head.weight" in adamw_names) == (not tied)  # tied: it is embed.weight
    decay, no_decay = adamw.param_groups
    assert decay["weight_decay"] > 0 and no_decay["weight_decay"] == 0
    assert _names(model, no_decay["params"]) == {n for n in every if n.endswith("norm.weight")}
    assert [g["peak_lr"] for g in optimizer.param_groups] == [MUON.lr, MUON.lr, MUON.muon_lr]
    assert muon.param_groups[0]["momentum"] == MUON.muon_momentum


def test_a_combined_step_moves_only_the_parameters_with_gradients():
    torch.manual_seed(0)
    model = GPT(MODEL)
    optimizer = make_optimizer(model, MUON)
    _, muon = optimizer.optimizers
    owned = {id(p) for p in muon.param_groups[0]["params"]}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.randn_like(p) if id(p) in owned else None
    optimizer.step()
    moved = {name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])}
    assert moved == _names(model, list(muon.param_groups[0]["params"]))
    assert len(optimizer.state) == len(owned)  # AdamW made no state for gradient-less parameters
    optimizer.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("shape", [(48, 96), (96, 48), (64, 64)])
def test_muons_update_is_the_orthogonalised_gradient(shape: tuple[int, int]):
    """One step from a gradient U diag(s) V^T with singular values spread 0.1..1 (momentum 0,
    no weight decay): the update is -lr * sqrt(max(1, rows/cols)) * O, with O sharing the
    gradient's singular vectors and singular values all near 1.

    Tolerance: Newton-Schulz with Keller Jordan's 5-step quintic (in bfloat16) deliberately does
    not converge to exactly 1; it maps singular values into about [0.68, 1.14]. We ask for
    [0.5, 1.5] (the band its authors state) and max/min < 2, where the gradient's ratio is 10.
    """
    torch.manual_seed(0)
    rows, cols = shape
    k = min(shape)
    u, _ = torch.linalg.qr(torch.randn(rows, k))
    v, _ = torch.linalg.qr(torch.randn(cols, k))
    grad = u @ torch.diag(torch.linspace(0.1, 1.0, k)) @ v.T
    weight = torch.nn.Parameter(torch.randn(shape))
    start = weight.detach().clone()
    train = dataclasses.replace(MUON, muon_momentum=0.0, muon_weight_decay=0.0, muon_lr=0.05)

    class OneMatrix(torch.nn.Module):  # named like a block's projection, so Muon owns it
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Module()])
            self.blocks[0].attn = torch.nn.Module()
            self.blocks[0].attn.out = torch.nn.Module()
            self.blocks[0].attn.out.weight = weight

    optimizer = make_optimizer(OneMatrix(), train)
    weight.grad = grad
    optimizer.step()
    ortho = (start - weight.detach()) / (train.muon_lr * math.sqrt(max(1.0, rows / cols)))
    singular = torch.linalg.svdvals(ortho)
    assert 0.5 <= singular.min() and singular.max() <= 1.5
    assert singular.max() / singular.min() < 2.0
    in_gradient_basis = u.T @ ortho @ v  # diagonal if O = U S' V^T
    off_diagonal = in_gradient_basis - torch.diag(torch.diagonal(in_gradient_basis))
    assert off_diagonal.abs().max() < 0.05


def test_the_loop_schedules_each_group_from_its_own_peak():
    torch.manual_seed(0)
    model = GPT(MODEL)
    train = dataclasses.replace(MUON, max_steps=4, warmup_steps=2, lr=1e-3, muon_lr=0.04, schedule="wsd",
                                decay_fraction=0.5)
    optimizer = make_optimizer(model, train)
    seen: list[list[float]] = []
    real_step = optimizer.step

    def record_then_step() -> None:
        seen.append([g["lr"] for g in optimizer.param_groups])
        real_step()

    optimizer.step = record_then_step  # type: ignore[method-assign]
    ids = np.random.default_rng(0).integers(0, MODEL.vocab_size, 3000)
    sampler = WindowSampler(ids, MODEL.context_length, 4, seed=0)
    run_loop(model, optimizer, sampler.next_step, next_token_loss, train, TrainerState(),
             device=torch.device("cpu"), **QUIET)
    scales = [lr_multiplier(train, step, step / train.max_steps) for step in range(4)]
    assert scales == pytest.approx([0.5, 1.0, 1.0, 1.0 - (1 - train.min_lr_ratio) * 0.5])
    for lrs, scale in zip(seen, scales, strict=True):
        assert lrs == pytest.approx([1e-3 * scale, 1e-3 * scale, 0.04 * scale])


def test_an_interrupted_and_resumed_muon_run_equals_an_uninterrupted_one(
        tmp_path: Path, small_text_dir: Path, interrupted_at_step):
    base = preset("tiny")
    config = dataclasses.replace(base, data=str(small_text_dir), train=dataclasses.replace(
        base.train, dtype="fp32", optimizer="muon", schedule="wsd", max_steps=24, save_every=8, eval_every=8))
    straight = pretrain(config, tmp_path / "straight", **QUIET)

    interrupted_at_step(config, tmp_path / "resumed", 13)  # Ctrl-C in the middle of step 13
    folder = RunFolder(tmp_path / "resumed")
    assert load_run(folder.path).step == 12
    saved = folder.load_trainer_state()
    assert set(saved.optimizer_state["state"]["blocks.0.attn.qkv.weight"]) == {"momentum_buffer"}
    assert set(saved.optimizer_state["state"]["embed.weight"]) == {"step", "exp_avg", "exp_avg_sq"}

    resumed_config = folder.load_config().for_resume(train={"max_steps": 24})
    assert (resumed_config.train.optimizer, resumed_config.train.schedule) == ("muon", "wsd")  # recorded
    with pytest.raises(GlassError, match="saved optimizer"):
        pretrain(folder.load_config().for_resume(train={"optimizer": "adamw"}), folder.path, resume=True, **QUIET)
    resumed = pretrain(resumed_config, folder.path, resume=True, **QUIET)
    assert resumed.step == straight.step == 24
    a, b = load_run(tmp_path / "straight").model, load_run(folder.path).model
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=name)


def test_muon_state_round_trips_by_name_and_hyperparameters_come_from_the_config(tmp_path: Path):
    torch.manual_seed(0)
    model = GPT(MODEL)
    optimizer = make_optimizer(model, MUON)
    for _ in range(2):
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        optimizer.step()
    state = full_optimizer_state(model, optimizer)
    folder = RunFolder(tmp_path)
    folder.prepare()
    folder.save_trainer_state(model.state_dict(), state, TrainerState(step=2))
    saved = folder.load_trainer_state()

    again = GPT(MODEL)
    changed = dataclasses.replace(MUON, muon_lr=0.01, lr=1e-4)  # e.g. --resume --muon-lr 0.01 --lr 1e-4
    restored = make_optimizer(again, changed)
    load_full_state(again, restored, saved.weights, saved.optimizer_state)
    assert [g["peak_lr"] for g in restored.param_groups] == [1e-4, 1e-4, 0.01]
    _, muon = optimizer.optimizers
    _, muon_again = restored.optimizers
    for p, q in zip(muon.param_groups[0]["params"], muon_again.param_groups[0]["params"], strict=True):
        assert torch.equal(muon.state[p]["momentum_buffer"], muon_again.state[q]["momentum_buffer"])
        assert torch.equal(p.detach(), q.detach())
    assert len(restored.state) == len(list(again.parameters()))
    assert muon_again.param_groups[0]["ns_steps"] == 5


def test_wsd_warms_up_holds_the_peak_then_decays_linearly():
    t = TrainConfig(schedule="wsd", decay_fraction=0.2, lr=1e-3, min_lr_ratio=0.1, warmup_steps=10)
    assert lr_multiplier(t, 0, 0.0) == pytest.approx(0.1)  # warmup
    assert lr_multiplier(t, 4, 0.0) == pytest.approx(0.5)
    assert lr_multiplier(t, 10, 0.05) == 1.0  # just after warmup
    assert lr_multiplier(t, 500, 0.5) == 1.0  # mid-stable
    assert lr_multiplier(t, 800, 0.8) == pytest.approx(1.0)  # the decay starts
    assert lr_multiplier(t, 900, 0.9) == pytest.approx(0.55)  # halfway down to min_lr_ratio
    assert lr_multiplier(t, 1000, 1.0) == pytest.approx(0.1)  # the end
    assert lr_multiplier(t, 1000, 1.7) == pytest.approx(0.1)  # a time budget overrun stays at the floor
    assert learning_rate(t, 900, 0.9) == pytest.approx(0.55e-3)
    whole = dataclasses.replace(t, decay_fraction=1.0)  # decay over the whole run: a linear schedule
    assert lr_multiplier(whole, 500, 0.5) == pytest.approx(0.55)


def test_cosine_is_unchanged_and_is_the_default():
    t = TrainConfig(lr=2e-3, min_lr_ratio=0.1, warmup_steps=10)
    assert (t.schedule, t.optimizer) == ("cosine", "adamw")
    assert lr_multiplier(t, 10, 0.0) == pytest.approx(1.0)
    assert lr_multiplier(t, 100, 0.5) == pytest.approx(0.55)
    assert lr_multiplier(t, 100, 0.25) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert learning_rate(t, 100, 1.0) == pytest.approx(2e-4)
    assert isinstance(make_optimizer(GPT(MODEL), t), torch.optim.AdamW)  # today's optimizer, alone


@pytest.mark.parametrize(("changes", "message"), [
    ({"optimizer": "sgd"}, "optimizer must be adamw or muon"),
    ({"schedule": "linear"}, "schedule must be cosine or wsd"),
    ({"decay_fraction": 0.0}, "decay_fraction"),
    ({"decay_fraction": 1.5}, "decay_fraction"),
    ({"muon_lr": 0.0}, "muon_lr"),
    ({"muon_momentum": 1.0}, "muon_momentum"),
    ({"qk_clip": -1.0}, "qk_clip"),
    ({"repeat_fraction": 1.0}, "repeat_fraction must be in"),
    ({"repeat_source": "shuffled"}, "repeat_source must be passage or scattered"),
])
def test_bad_optimizer_settings_are_one_line_errors(changes: dict, message: str):
    with pytest.raises(GlassError, match=message):
        TrainConfig(**changes)


def test_cli_flags_reach_the_config(tmp_path: Path):
    import argparse

    from glassgpt.commands import train_cmd

    parser = argparse.ArgumentParser()
    train_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["train", "--preset", "tiny", "--out", str(tmp_path), "--optimizer", "muon",
                              "--muon-lr", "0.03", "--schedule", "wsd", "--decay-fraction", "0.3",
                              "--qk-clip", "50", "--repeat-fraction", "0.2", "--repeat-source", "scattered",
                              "--repeat-min-period", "4", "--repeat-max-period", "24"])
    train = train_cmd.build_config(args).train
    assert (train.optimizer, train.muon_lr, train.schedule, train.decay_fraction, train.qk_clip,
            train.repeat_fraction, train.repeat_source) == ("muon", 0.03, "wsd", 0.3, 50.0, 0.2, "scattered")
    assert (train.repeat_min_period, train.repeat_max_period) == (4, 24)
    default = train_cmd.build_config(parser.parse_args(["train", "--preset", "tiny"])).train
    assert default == preset("tiny").train  # no flag, no change


def test_our_muon_steps_like_torchs_with_float32_newton_schulz():
    """Two steps with momentum, Nesterov and weight decay, against torch.optim.Muon. Stated
    tolerance: torch's Newton-Schulz runs in bfloat16 (8 bits of mantissa), ours in float32 on
    CPUs, so the updates agree to about 1% of their size (we allow 3%), not bit for bit."""
    torch.manual_seed(0)
    start = torch.randn(96, 48)
    grads = [torch.randn(96, 48) for _ in range(2)]
    moved = []
    for cls in (Muon, torch.optim.Muon):
        weight = torch.nn.Parameter(start.clone())
        optimizer = cls([weight], lr=0.05, weight_decay=0.1, momentum=0.95, adjust_lr_fn="original")
        for grad in grads:
            weight.grad = grad.clone()
            optimizer.step()
        moved.append(weight.detach() - start)
    ours, torchs = moved
    assert (ours - torchs).norm() < 0.03 * torchs.norm()
    assert not torch.equal(ours, torchs)  # ours really is the float32 path


def test_muon_steps_each_stacked_matrix_as_if_it_were_alone(monkeypatch: pytest.MonkeyPatch):
    """Muon orthogonalises a group's same-shaped matrices as one stack. Against the same
    optimizer with each matrix in a group of its own (where nothing is stacked), three steps of a
    model's hidden matrices (two layers: pairs of four shapes, tall, wide and square) with
    momentum, Nesterov and weight decay end at the same weights, to float32 rounding, and each
    matrix moved (a stack that mixed matrices up, or normed them together, would not match)."""
    torch.manual_seed(0)
    model = GPT(MODEL)
    hidden = [(name, p) for name, p in model.named_parameters() if name.endswith(HIDDEN_SUFFIXES)]
    assert len({p.shape for _, p in hidden}) < len(hidden)  # there is something to stack
    grads = [{name: torch.randn_like(p) * (1 + i) for i, (name, p) in enumerate(hidden)} for _ in range(3)]
    calls: list[int] = []  # the number of matrices each Newton-Schulz call took
    real = optim.orthogonalize

    def counting(matrix: torch.Tensor, *args):
        calls.append(1 if matrix.dim() == 2 else len(matrix))
        return real(matrix, *args)

    monkeypatch.setattr("glassgpt.train.optim.orthogonalize", counting)
    ends = []
    for separate in (False, True):
        weights = {name: torch.nn.Parameter(p.detach().clone()) for name, p in hidden}
        groups = [{"params": [w]} for w in weights.values()] if separate else [{"params": list(weights.values())}]
        optimizer = Muon(groups, lr=0.05, weight_decay=0.1, momentum=0.95, adjust_lr_fn="original")
        for step_grads in grads:
            for name, w in weights.items():
                w.grad = step_grads[name].clone()
            optimizer.step()
        ends.append(weights)
    stacked, alone = ends
    assert calls == [2] * 4 * 3 + [1] * 8 * 3  # stacked: 4 shapes x 2 layers; alone: 8 matrices
    for name, p in hidden:
        assert not torch.allclose(alone[name], p, atol=1e-3), name
        torch.testing.assert_close(stacked[name], alone[name], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not onednn_available(), reason="this PyTorch has no oneDNN linear")
def test_muon_on_onednn_steps_as_on_pytorchs_kernel():
    """Newton-Schulz's products on oneDNN (one matrix at a time): the same three steps of a
    model's hidden matrices end at the same weights, to float32 rounding."""
    torch.manual_seed(0)
    model = GPT(MODEL)
    optimizer = make_optimizer(model, MUON)
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    grads = [{name: torch.randn_like(p) for name, p in model.named_parameters()} for _ in range(3)]
    ends = []
    for kernel in ("aten", "onednn"):
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(start[name])
        optimizer = make_optimizer(model, MUON)
        set_matmul_kernel(optimizer, kernel)
        assert [getattr(o, "matmul_kernel", None) for o in optimizer] == [None, kernel]
        for step_grads in grads:
            for name, p in model.named_parameters():
                p.grad = step_grads[name].clone()
            optimizer.step()
        ends.append({name: p.detach().clone() for name, p in model.named_parameters()})
    for name, weight in ends[0].items():
        assert not torch.equal(weight, start[name]), name
        torch.testing.assert_close(ends[1][name], weight, rtol=1e-5, atol=1e-6, msg=name)


def _attention_logits(model: GPT, ids: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's causal attention logits (B, H, T, T), -inf above the diagonal, computed naively."""
    seen: list[torch.Tensor] = []
    for block in model.blocks:
        real = block.attn.qkv_heads

        def spy(x, cos, sin, real=real):
            q, k, v = real(x, cos, sin)
            k_per_query = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
            logits = (q @ k_per_query.transpose(-1, -2)) / math.sqrt(q.shape[-1])
            causal = torch.ones(logits.shape[-1], logits.shape[-1], dtype=torch.bool).tril()
            seen.append(logits.masked_fill(~causal, float("-inf")))
            return q, k, v

        block.attn.qkv_heads = spy
    with torch.no_grad():
        model(ids)
    for block in model.blocks:
        del block.attn.qkv_heads  # back to the class's method
    return seen


def test_max_attention_logits_is_each_heads_largest_causal_logit():
    torch.manual_seed(0)
    q, k = torch.randn(3, 4, 7, 8), torch.randn(3, 2, 7, 8)  # 4 query heads on 2 key heads
    expected = torch.full((4,), float("-inf"))
    for b in range(3):
        for h in range(4):
            for i in range(7):
                for j in range(i + 1):  # causal: a query sees itself and the past only
                    expected[h] = max(expected[h], float(q[b, h, i] @ k[b, h // 2, j]) / math.sqrt(8))
    torch.testing.assert_close(max_attention_logits(q, k), expected)


def test_qk_clip_brings_heads_over_the_limit_down_to_it_and_leaves_the_rest_alone():
    torch.manual_seed(0)
    model = GPT(MODEL)  # 4 query heads on 2 key/value heads
    head_dim = MODEL.head_dim
    with torch.no_grad():  # make query head 1 (in key head 0's group) look very sharply
        model.blocks[0].attn.qkv.weight[head_dim:2 * head_dim] *= 40
    ids = torch.randint(0, MODEL.vocab_size, (2, MODEL.context_length))
    before = _attention_logits(model, ids)
    largest = [layer.amax(dim=(0, 2, 3)) for layer in before]  # (H,) per layer
    limit = float(largest[0][1]) / 3
    assert largest[0][1] > limit and all(float(layer.max()) < limit for layer in largest[1:])
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}

    track_attention_logits(model, True)
    model.train()
    model(ids)  # a training forward records each head's largest logit
    assert clip_attention_logits(model, limit) == pytest.approx(float(max(layer.max() for layer in largest)))
    after = _attention_logits(model, ids)

    over = largest[0] > limit
    assert over.tolist() == [False, True, False, False]
    torch.testing.assert_close(after[0].amax(dim=(0, 2, 3))[over], torch.tensor([limit]))  # exactly the limit
    # the layer's other heads score exactly as before (later layers see a changed input: not compared)
    torch.testing.assert_close(after[0][:, ~over], before[0][:, ~over])
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, weights[name])}
    assert changed == {"blocks.0.attn.qkv.weight"}
    qkv_before, qkv_after = weights["blocks.0.attn.qkv.weight"], model.blocks[0].attn.qkv.weight
    rows_changed = (qkv_before != qkv_after).any(dim=1).nonzero().flatten().tolist()
    # query heads 0 and 1 and key head 0 (their shared group); no value row
    assert rows_changed == [*range(0, 2 * head_dim), *range(4 * head_dim, 5 * head_dim)]
    track_attention_logits(model, False)
    model(ids)
    assert all(block.attn.max_logit is None for block in model.blocks)


def test_the_loop_clips_every_step_records_the_largest_logit_and_stops_tracking_after():
    ids = np.random.default_rng(0).integers(0, MODEL.vocab_size, 3000)
    probe = torch.from_numpy(ids[:4 * MODEL.context_length].reshape(4, -1))
    largest: dict[float, float] = {}
    for limit in (0.0, 0.01):  # off, and below the logits at initialisation (~0.05)
        torch.manual_seed(0)
        model = GPT(MODEL)
        train = dataclasses.replace(MUON, max_steps=6, log_every=2, qk_clip=limit)
        records: list[dict] = []
        sampler = WindowSampler(ids, MODEL.context_length, 4, seed=0)
        run_loop(model, make_optimizer(model, train), sampler.next_step, next_token_loss, train, TrainerState(),
                 device=torch.device("cpu"), hooks=LoopHooks(record=records.append), **QUIET)
        assert not any(block.attn.track_max_logit for block in model.blocks)
        largest[limit] = max(float(layer.max()) for layer in _attention_logits(model, probe))
        if limit:
            assert [r["step"] for r in records] == [2, 4, 6]
            # measured before each step's clip: at least the level the previous clip left (records round to 0.01)
            assert all(r["max_attention_logit"] >= limit - 0.005 for r in records)
        else:
            assert not any("max_attention_logit" in r for r in records)
    assert largest[0.01] < largest[0.0] / 3


def test_attention_keeps_the_largest_logit_over_a_steps_micro_batches():
    torch.manual_seed(0)
    model = GPT(MODEL)
    a, b = (torch.randint(0, MODEL.vocab_size, (2, MODEL.context_length)) for _ in range(2))
    per_batch = [[layer.amax(dim=(0, 2, 3)) for layer in _attention_logits(model, ids)] for ids in (a, b)]
    assert not torch.equal(per_batch[0][0], per_batch[1][0])
    track_attention_logits(model, True)
    model.train()
    with torch.no_grad():
        model(a)
        model(b)
    for i, block in enumerate(model.blocks):
        torch.testing.assert_close(block.attn.max_logit, torch.maximum(per_batch[0][i], per_batch[1][i]))
