"""Pretraining and the one training loop: run folders, resume, mechanics of a step."""

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from glassgpt.config import ModelConfig, RunConfig, TrainConfig, preset
from glassgpt.data.batches import WindowSampler
from glassgpt.errors import GlassError
from glassgpt.evaluate import evaluate, token_byte_lengths
from glassgpt.matmul import onednn_available
from glassgpt.model import GPT, RESIDUAL_OUTPUTS
from glassgpt.runs import RunFolder, TrainerState, load_run
from glassgpt.tokenizer import Tokenizer
from glassgpt.train.loop import LoopHooks, run_loop, speed_text
from glassgpt.train.optim import learning_rate
from glassgpt.train.pretrain import next_token_loss, pretrain

QUIET = {"show_progress": False, "log": lambda _: None}


def tiny_config(data: Path, **train_changes) -> RunConfig:
    config = preset("tiny")
    changes = {"dtype": "fp32", **train_changes}
    return dataclasses.replace(config, data=str(data), train=dataclasses.replace(config.train, **changes))


def test_run_folder_has_weights_tokenizer_metrics_and_curve(tiny_run: Path):
    run = RunFolder(tiny_run)
    for path in (run.config_path, run.weights_path, run.tokenizer_path, run.trainer_state_path,
                 run.metrics_path, run.loss_curve_path):
        assert path.is_file(), path
    records = run.read_metrics()
    assert [r["step"] for r in records] == sorted({r["step"] for r in records})
    assert all({"step", "train_loss", "tokens_per_s"} <= r.keys() for r in records)
    evals = [r for r in records if "val_loss" in r]
    assert evals and evals[-1]["step"] == 60
    # Bits per byte is the loss in bits spread over the bytes the tokens stand for: with this
    # tokenizer's ~2-4 bytes per token it must sit well below the loss in bits per token.
    for r in evals:
        assert 1.5 < r["val_loss"] / math.log(2) / r["val_bpb"] < 5
    # Training works: the loss falls well below a uniform guess over 512 tokens.
    assert records[-1]["train_loss"] < math.log(512) - 0.5
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]


def test_config_records_format_version_and_lineage(tiny_run: Path):
    raw = RunFolder(tiny_run).config_path.read_text()
    assert '"format_version": 1' in raw and '"stage": "pretrain"' in raw and '"parent": null' in raw
    config = RunFolder(tiny_run).load_config()
    assert config.stage == "pretrain" and config.parent is None
    newer = config.to_dict() | {"format_version": 99}
    with pytest.raises(GlassError, match="upgrade glassgpt"):
        RunConfig.from_dict(newer)
    old = {k: v for k, v in config.to_dict().items() if k not in ("format_version", "stage", "parent")}
    assert RunConfig.from_dict(old) == config  # runs saved before lineage still load


def test_continued_pretraining_starts_from_the_parent_with_a_fresh_optimizer(tiny_run: Path, tmp_path: Path):
    import argparse

    from glassgpt.commands import train_cmd

    parser = argparse.ArgumentParser()
    train_cmd.register(parser.add_subparsers())
    out = tmp_path / "more"
    # A learning rate so small that one step leaves the weights where the parent left them.
    args = parser.parse_args(["train", "--init-from", str(tiny_run), "--max-steps", "1", "--lr", "1e-9",
                              "--warmup-steps", "0", "--out", str(out)])
    config = train_cmd.build_config(args)
    parent = load_run(tiny_run)
    assert (config.stage, config.parent, config.model, config.data) == (
        "pretrain", str(tiny_run), parent.config.model, parent.config.data)
    assert config.train == dataclasses.replace(parent.config.train, max_steps=1, time_budget_min=0.0, lr=1e-9,
                                               warmup_steps=0)  # the parent's recipe, as changed
    pretrain(config, out, cache_dir=None, **QUIET)
    child = load_run(out)
    assert child.tokenizer.to_json() == parent.tokenizer.to_json()
    for (name, weight), parent_weight in zip(child.model.state_dict().items(), parent.model.state_dict().values(),
                                             strict=True):
        assert torch.allclose(weight, parent_weight, atol=1e-6), name
    assert RunFolder(out).load_trainer_state().state.step == 1  # a new run, not the parent's step 60 + 1
    last_val = [r["val_loss"] for r in RunFolder(tiny_run).read_metrics() if "val_loss" in r][-1]
    assert RunFolder(out).read_metrics()[-1]["val_loss"] == pytest.approx(last_val, abs=1e-4)


def test_overrides_and_resume_rules():
    base = preset("demo")
    steps_only = base.with_overrides(train={"max_steps": 7})
    assert steps_only.train.max_steps == 7 and steps_only.train.time_budget_min == 0
    budget_only = base.with_overrides(train={"time_budget_min": 2.0})
    assert budget_only.train.time_budget_min == 2.0 and budget_only.train.max_steps >= 10**9
    gpt2 = base.with_overrides(tokenizer={"kind": "gpt2"}, model={"n_head": 6})
    assert gpt2.tokenizer.vocab_size == gpt2.model.vocab_size == 50257
    assert gpt2.model.n_kv_head == 6
    resumed = base.for_resume(train={"max_steps": 9})
    assert resumed.model == base.model and resumed.train.max_steps == 9
    # An MLP at its default width follows a new d_model (8/3 x 96 -> 256, 8/3 x 240 -> 640), unless
    # a width is given; a width that is not the default stays.
    assert base.model.mlp_hidden == 256 and base.with_overrides(model={"d_model": 240}).model.mlp_hidden == 640
    assert base.with_overrides(model={"d_model": 240, "mlp_hidden": 896}).model.mlp_hidden == 896
    wide = base.with_overrides(model={"mlp_hidden": 1000})
    assert wide.with_overrides(model={"d_model": 240}).model.mlp_hidden == 1000
    assert base.with_overrides(model={"mlp": "gelu", "d_model": 240}).model.mlp_hidden == 960
    with pytest.raises(GlassError, match="--resume continues"):
        base.for_resume(changes_model=True)


def test_learning_rate_warms_up_then_decays_by_cosine():
    t = preset("tiny").train
    assert learning_rate(t, 0, 0.0) == pytest.approx(t.lr / t.warmup_steps)
    assert learning_rate(t, t.warmup_steps, 0.0) == pytest.approx(t.lr)
    assert learning_rate(t, 100, 0.5) == pytest.approx(t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) / 2))
    assert learning_rate(t, 100, 1.0) == pytest.approx(t.lr * t.min_lr_ratio)


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path: Path, small_text_dir: Path,
                                                          interrupted_at_step):
    config = tiny_config(small_text_dir, max_steps=24, save_every=8, eval_every=8)
    straight = pretrain(config, tmp_path / "straight", **QUIET)

    interrupted_at_step(config, tmp_path / "resumed", 17)  # Ctrl-C in the middle of step 17
    assert load_run(tmp_path / "resumed").step == 16  # Ctrl-C saved the last finished step

    resumed_config = RunFolder(tmp_path / "resumed").load_config().for_resume(train={"max_steps": 24})
    resumed = pretrain(resumed_config, tmp_path / "resumed", resume=True, **QUIET)
    assert resumed.step == straight.step == 24
    a, b = load_run(tmp_path / "straight").model, load_run(tmp_path / "resumed").model
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=name)
    steps = [r["step"] for r in RunFolder(tmp_path / "resumed").read_metrics()]
    assert steps == sorted(set(steps)) and steps[-1] == 24  # no duplicated log lines after resume


def test_a_metrics_line_cut_by_a_kill_is_skipped_and_dropped_on_resume(tmp_path: Path):
    run = RunFolder(tmp_path)
    for step in (1, 2, 3):
        run.append_metrics({"step": step, "train_loss": 1.0 / step})
    with open(run.metrics_path, "a") as f:
        f.write('{"step": 4, "train_lo')  # the process died mid-line
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3]
    run.keep_metrics_until(2)
    assert run.metrics_path.read_text().count("\n") == 2
    assert [r["step"] for r in run.read_metrics()] == [1, 2]


@pytest.mark.slow
def test_a_compiled_run_trains_as_the_eager_one_and_saves_plain_weights(tmp_path: Path, small_text_dir: Path):
    config = tiny_config(small_text_dir, max_steps=8, eval_every=8, log_every=2)
    eager = pretrain(config, tmp_path / "eager", **QUIET)
    compiled_config = dataclasses.replace(config, train=dataclasses.replace(config.train, compile="on"))
    compiled = pretrain(compiled_config, tmp_path / "compiled", **QUIET)
    losses = [[r["train_loss"] for r in RunFolder(tmp_path / name).read_metrics()] for name in ("eager", "compiled")]
    assert len(losses[0]) == 4 and losses[0][-1] < losses[0][0]
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)  # fused kernels round differently, no more
    assert compiled.val.loss == pytest.approx(eager.val.loss, rel=1e-3)
    # The run folder holds the model's own parameter names (no torch.compile wrapper prefix).
    assert load_run(tmp_path / "compiled").model.state_dict().keys() == load_run(tmp_path / "eager").model.state_dict().keys()


def test_refuses_to_overwrite_a_run_and_resume_needs_one(tmp_path: Path, tiny_run: Path, small_text_dir: Path):
    with pytest.raises(GlassError, match="--resume"):
        pretrain(tiny_config(small_text_dir), tiny_run, **QUIET)
    with pytest.raises(GlassError, match="no such run folder"):
        pretrain(tiny_config(small_text_dir), tmp_path / "none", resume=True, **QUIET)


def test_char_and_gpt2_tokenizers_train(tmp_path: Path, small_text_dir: Path):
    for kind in ("char", "gpt2"):
        config = tiny_config(small_text_dir, max_steps=3, eval_every=3)
        config = config.with_overrides(tokenizer={"kind": kind})
        result = pretrain(config, tmp_path / kind, **QUIET)
        run = load_run(tmp_path / kind)
        assert run.tokenizer.kind == kind
        assert run.config.model.vocab_size == run.tokenizer.vocab_size
        # 3 steps from random weights: still close to a uniform guess over the vocabulary.
        assert result.val is not None
        assert abs(result.val.loss - math.log(run.tokenizer.vocab_size)) < 1.0


def test_zero_residual_init_starts_those_weights_at_zero_and_trains_them(tmp_path: Path, small_text_dir: Path):
    # One AdamW step moves each weight by at most the learning rate: from zero, the projections
    # into the residual stream stay within it; from GPT-2's init (std 0.01 here) they do not.
    largest = {}
    for init in ("zero", "scaled"):
        config = tiny_config(small_text_dir, max_steps=1, eval_every=1, warmup_steps=0, residual_init=init)
        pretrain(config, tmp_path / init, **QUIET)
        run = load_run(tmp_path / init)
        assert run.config.train.residual_init == init
        outputs = [w for name, w in run.model.state_dict().items() if name.endswith(RESIDUAL_OUTPUTS)]
        assert len(outputs) == 2 * config.model.n_layer and all(w.any() for w in outputs)  # they train
        largest[init] = max(w.abs().max().item() for w in outputs)
    assert largest["zero"] <= config.train.lr * 1.01 < largest["scaled"]


@pytest.mark.skipif(not onednn_available(), reason="this PyTorch has no oneDNN linear")
def test_training_on_onednn_says_so_and_learns_as_on_pytorchs_own_kernel(tmp_path: Path, small_text_dir: Path):
    """The same 3 steps with each float32 kernel: the same first loss (before any update), nearly
    the same losses after (AdamW's first steps magnify rounding in near-zero gradients a little)."""
    runs = {}
    for kernel in ("aten", "onednn"):
        lines: list[str] = []
        config = tiny_config(small_text_dir, max_steps=3, eval_every=3, log_every=1, dtype="fp32", matmul=kernel)
        pretrain(config, tmp_path / kernel, show_progress=False, log=lines.append)
        assert any(line.startswith("float32 matmuls: onednn") for line in lines) == (kernel == "onednn")
        runs[kernel] = RunFolder(tmp_path / kernel).read_metrics()
    first = [[r["train_loss"] for r in runs[k] if "train_loss" in r] for k in ("aten", "onednn")]
    assert first[0][0] == pytest.approx(first[1][0], rel=1e-5)
    assert first[0][-1] == pytest.approx(first[1][-1], rel=1e-3)
    assert runs["aten"][-1]["val_loss"] == pytest.approx(runs["onednn"][-1]["val_loss"], rel=1e-3)


def test_too_little_data_is_a_clear_error(tmp_path: Path):
    (tmp_path / "short.txt").write_text("A short text. " * 20)
    with pytest.raises(GlassError, match="too short"):
        pretrain(tiny_config(tmp_path / "short.txt"), tmp_path / "run", **QUIET)


# ----------------------------------------------------------------------------- loop mechanics


def _one_step(model_config: ModelConfig, train: TrainConfig, ids: np.ndarray) -> GPT:
    torch.manual_seed(0)
    model = GPT(model_config)
    sampler = WindowSampler(ids, model_config.context_length, train.batch_size, train.grad_accum, seed=5)
    # Plain SGD: the update is the gradient itself (Adam's first step, g / |g|, would magnify
    # float rounding in near-zero gradients).
    run_loop(model, torch.optim.SGD(model.parameters(), lr=1.0), sampler.next_step, next_token_loss, train, TrainerState(),
             device=torch.device("cpu"), **QUIET)
    return model


def test_mfu_is_against_the_highest_peak_measured_at_the_first_log_and_evaluations():
    model_config = ModelConfig(vocab_size=64, context_length=16, n_layer=1, n_head=2, d_model=32)
    train = TrainConfig(batch_size=2, max_steps=6, warmup_steps=0, log_every=1, eval_every=2, save_every=100)
    sampler = WindowSampler(np.random.default_rng(0).integers(0, 64, 2000), 16, 2, 1, seed=5)
    remeasured = iter([120e9, 50e9, 400e9, 300e9])  # above the start's, a disturbed one (low), better, worse
    records: list[dict] = []
    hooks = LoopHooks(evaluate=lambda is_last: {}, record=records.append)
    model = GPT(model_config)
    run_loop(model, torch.optim.SGD(model.parameters(), lr=0.0), sampler.next_step,
             next_token_loss, train, TrainerState(), device=torch.device("cpu"), hooks=hooks,
             flops_per_token=1e6, peak_flops=100e9, measure_peak=lambda: next(remeasured), **QUIET)
    # Steps 1-6: the first log (step 1) takes 120 over the start's 100, the first evaluation (step
    # 2) keeps 120 over 50, the second (step 4) takes 400, the third (step 6) keeps 400 over 300;
    # logging steps between use the peak known then.
    assert [r["peak_gflops_per_s"] for r in records] == [120, 120, 120, 400, 400, 400]
    for r in records:
        assert r["mfu"] == pytest.approx(r["tokens_per_s"] * 1e6 / (r["peak_gflops_per_s"] * 1e9), abs=1e-4)


def test_tokens_per_s_counts_training_steps_only_not_saving_between_them():
    model_config = ModelConfig(vocab_size=64, context_length=16, n_layer=1, n_head=2, d_model=32)
    train = TrainConfig(batch_size=2, max_steps=15, warmup_steps=0, log_every=5, eval_every=100, save_every=5)
    sampler = WindowSampler(np.random.default_rng(0).integers(0, 64, 2000), 16, 2, 1, seed=5)

    def slow_loss(model, batch):  # ~0.05 s a step, so the records' rounded times are exact enough
        time.sleep(0.05)
        return next_token_loss(model, batch)

    records: list[dict] = []
    hooks = LoopHooks(save=lambda state, interrupted: time.sleep(0.5), record=records.append)
    model = GPT(model_config)
    run_loop(model, torch.optim.SGD(model.parameters(), lr=0.0), sampler.next_step, slow_loss, train,
             TrainerState(), device=torch.device("cpu"), hooks=hooks, **QUIET)
    # Each window's speed is its tokens over its steps' time (the records' elapsed_s, which
    # excludes saving); a 0.5 s save after steps 5 and 10 once cut the next window's speed ~3x.
    assert [r["step"] for r in records] == [5, 10, 15]
    previous = {"tokens_seen": 0, "elapsed_s": 0.0}
    for r in records:
        steps_speed = (r["tokens_seen"] - previous["tokens_seen"]) / (r["elapsed_s"] - previous["elapsed_s"])
        assert r["tokens_per_s"] == pytest.approx(steps_speed, rel=0.08)
        previous = r


def test_k_micro_batches_of_b_equal_one_batch_of_k_times_b():
    model_config = ModelConfig(vocab_size=64, context_length=16, n_layer=2, n_head=2, d_model=32)
    ids = np.random.default_rng(0).integers(0, 64, 5000)
    base = TrainConfig(max_steps=1, warmup_steps=0, lr=1.0, grad_clip=0, eval_every=10, log_every=10, save_every=10)
    whole = _one_step(model_config, dataclasses.replace(base, batch_size=8, grad_accum=1), ids)
    split = _one_step(model_config, dataclasses.replace(base, batch_size=2, grad_accum=4), ids)
    torch.manual_seed(0)
    untouched = GPT(model_config)
    changed = 0
    for (name, p), q, r in zip(whole.state_dict().items(), split.state_dict().values(),
                               untouched.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=name)
        changed += not torch.equal(p, r)
    assert changed == len(whole.state_dict())  # the step moved every weight


def test_sampler_splits_one_global_batch_across_processes_and_micro_steps():
    ids = np.arange(10_000)
    one = WindowSampler(ids, 8, batch_size=6, seed=3).next_step()
    ranks = [WindowSampler(ids, 8, batch_size=3, seed=3, rank=r, world_size=2).next_step() for r in (0, 1)]
    micro = WindowSampler(ids, 8, batch_size=2, grad_accum=3, seed=3).next_step()
    whole = one[0][0]
    assert torch.equal(torch.cat([ranks[0][0][0], ranks[1][0][0]]), whole)
    assert torch.equal(torch.cat([x for x, _ in micro]), whole)
    x, y = one[0]
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one


def test_repeated_windows_repeat_a_passage_and_split_like_plain_ones():
    ids, context = np.arange(100_000), 32
    sampler = WindowSampler(ids, context, batch_size=400, seed=3, repeat_fraction=0.25)
    x, y = sampler.next_step()[0]
    assert torch.equal(x[:, 1:], y[:, :-1])
    rows = torch.cat([x, y[:, -1:]], 1)
    # A plain window counts up by one; a repeated one jumps back to its passage's start.
    repeated = (rows[:, 1:] != rows[:, :-1] + 1).any(1)
    assert 0.18 < repeated.float().mean() < 0.32
    for row in rows[repeated]:
        period = int((row[1:] < row[:-1]).nonzero()[0]) + 1  # the first jump back
        assert (context + 1) // 4 <= period <= (context + 1) // 2
        assert torch.equal(row[period:], row[:len(row) - period])  # the passage again, and again
        assert torch.equal(row[:period], torch.arange(int(row[0]), int(row[0]) + period))
    one = WindowSampler(ids, 8, batch_size=6, seed=3, repeat_fraction=0.5).next_step()
    ranks = [WindowSampler(ids, 8, batch_size=3, seed=3, rank=r, world_size=2, repeat_fraction=0.5).next_step()
             for r in (0, 1)]
    micro = WindowSampler(ids, 8, batch_size=2, grad_accum=3, seed=3, repeat_fraction=0.5).next_step()
    assert torch.equal(torch.cat([ranks[0][0][0], ranks[1][0][0]]), one[0][0])
    assert torch.equal(torch.cat([x for x, _ in micro]), one[0][0])
    plain = WindowSampler(ids, 8, batch_size=6, seed=3).next_step()[0][0]
    assert not torch.equal(plain, one[0][0]) and (plain == one[0][0]).all(1).any()  # plain rows stay as they were


def test_repeated_passages_take_their_length_from_the_period_range():
    ids, context = np.arange(100_000), 64
    sampler = WindowSampler(ids, context, batch_size=600, seed=3, repeat_fraction=0.5, repeat_periods=(3, 7))
    x, y = sampler.next_step()[0]
    rows = torch.cat([x, y[:, -1:]], 1)
    repeated = (rows[:, 1:] != rows[:, :-1] + 1).any(1)
    periods = [int((row[1:] < row[:-1]).nonzero()[0]) + 1 for row in rows[repeated]]
    assert set(periods) == {3, 4, 5, 6, 7}  # every length of the range, and none outside it
    for row, period in zip(rows[repeated], periods, strict=True):
        assert torch.equal(row[period:], row[:len(row) - period])  # said again and again, ~9-21 times
    # Only one end given, beyond the other default end: the default moves to meet it.
    assert WindowSampler(ids, context, batch_size=4, seed=3, repeat_fraction=0.5, repeat_periods=(0, 10)).repeat_periods == (10, 10)
    assert WindowSampler(ids, context, batch_size=4, seed=3, repeat_fraction=0.5, repeat_periods=(40, 0)).repeat_periods == (40, 40)
    assert WindowSampler(ids, context, batch_size=4, seed=3, repeat_fraction=0.5).repeat_periods == (16, 32)
    with pytest.raises(ValueError, match="do not fit windows of 64"):
        WindowSampler(ids, context, batch_size=4, seed=3, repeat_fraction=0.5, repeat_periods=(3, 65))
    with pytest.raises(GlassError, match="repeat_min_period .5. must not exceed repeat_max_period .4."):
        TrainConfig(repeat_min_period=5, repeat_max_period=4)
    with pytest.raises(GlassError, match="must be >= 2 tokens"):
        TrainConfig(repeat_min_period=1)
    with pytest.raises(GlassError, match="does not fit the context of 64"):
        RunConfig(model=ModelConfig(context_length=64), train=TrainConfig(repeat_max_period=65))


def test_scattered_repeats_say_tokens_from_anywhere_twice():
    ids, context = np.arange(100_000), 32
    sampler = WindowSampler(ids, context, batch_size=400, seed=3, repeat_fraction=0.25, repeat_source="scattered")
    x, y = sampler.next_step()[0]
    rows = torch.cat([x, y[:, -1:]], 1)
    repeated = (rows[:, 1:] != rows[:, :-1] + 1).any(1)
    assert 0.18 < repeated.float().mean() < 0.32
    for row in rows[repeated]:
        period = next(p for p in range((context + 1) // 4, (context + 1) // 2 + 1)
                      if torch.equal(row[p:], row[:len(row) - p]))  # the shortest period that repeats
        passage = row[:period]
        assert (passage[1:] != passage[:-1] + 1).float().mean() > 0.9  # not a stretch of the corpus
    # Plain rows are the same windows as with passages (the scattered positions are drawn after them).
    passages = WindowSampler(ids, context, batch_size=400, seed=3, repeat_fraction=0.25).next_step()[0][0]
    assert torch.equal(x[~repeated], passages[~repeated])
    with pytest.raises(ValueError, match="repeat_source"):
        WindowSampler(ids, context, batch_size=4, seed=3, repeat_source="shuffled")


def test_random_repeats_are_targets_only_where_copying_predicts_them():
    ids, context = np.arange(100_000), 32
    x, y = WindowSampler(ids, context, batch_size=400, seed=3, repeat_fraction=0.25,
                         repeat_source="random").next_step()[0]
    hidden = (y == -1).sum(1)
    repeated = hidden > 0
    assert 0.18 < repeated.float().mean() < 0.32
    for row, targets, period in zip(x[repeated], y[repeated], hidden[repeated].tolist(), strict=True):
        assert (context + 1) // 4 <= period <= (context + 1) // 2
        assert torch.equal(row[period:], row[:len(row) - period])  # said again and again
        assert torch.equal(targets[period:-1], row[period + 1:])  # every later token is a target
        assert (targets[:period] == -1).all()  # the first saying (and the wrap back) is none
    assert torch.equal(y[~repeated][:, :-1], x[~repeated][:, 1:])  # plain rows are whole


def test_clipping_bounds_the_update():
    torch.manual_seed(0)
    model_config = ModelConfig(vocab_size=64, context_length=16, n_layer=1, n_head=2, d_model=32)
    model = GPT(model_config)
    before = [p.detach().clone() for p in model.parameters()]
    train = TrainConfig(max_steps=1, warmup_steps=0, lr=1.0, grad_clip=0.25, batch_size=4,
                        eval_every=10, log_every=10, save_every=10)
    ids = np.random.default_rng(0).integers(0, 64, 2000)
    sampler = WindowSampler(ids, 16, 4, seed=0)
    sgd = torch.optim.SGD(model.parameters(), lr=1.0)

    def huge_loss(m, batch):
        return 1000.0 * next_token_loss(m, batch)  # gradient norm far above the clip

    run_loop(model, sgd, sampler.next_step, huge_loss, train, TrainerState(), device=torch.device("cpu"), **QUIET)
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before, strict=True)))
    # Plain SGD at lr 1 moves the weights by exactly the clipped gradient.
    assert moved.item() == pytest.approx(0.25, rel=1e-4)


def test_bits_per_byte_is_loss_over_ln2_over_bytes_per_token():
    text = "héllo wörld, a small text with a few two-byte letters: ü é ö. " * 20
    tokenizer = Tokenizer.train_char([text])
    ids = np.asarray(tokenizer.encode(text), dtype=np.int64)
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, context_length=32, n_layer=1, n_head=2, d_model=16))
    lengths = token_byte_lengths(tokenizer)
    result = evaluate(model, ids, lengths, max_tokens=10_000, dtype=torch.float32, device=torch.device("cpu"))
    # Recompute by hand over the same windows: bytes of the targets, from the text itself.
    context = 32
    n = (len(ids) - 1) // context
    starts = np.linspace(0, len(ids) - context - 1, n).astype(np.int64)
    targets = np.concatenate([ids[s + 1:s + context + 1] for s in starts])
    target_bytes = sum(len(tokenizer.decode([int(t)]).encode("utf-8")) for t in targets)
    assert target_bytes > len(targets)  # the two-byte letters make it differ from 1 byte/token
    expected = result.loss * len(targets) / math.log(2) / target_bytes
    assert result.tokens == len(targets)
    assert result.bpb == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", ["tiny", "demo", "small"])
def test_flops_per_token_equals_torch_flop_counter_on_a_training_step(name: str):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    config = preset(name).model
    model = GPT(config)
    ids = torch.randint(0, config.vocab_size, (2, config.context_length))
    # The math attention kernel and the full-logits loss are made of the plain matmuls torch's
    # counter knows (it skips CPU flash attention and the chunked loss's in-place addmm_); the
    # attention products count at full, not causal-halved, size there as in our formula.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(ids).logits.sum().backward()
    assert counter.get_total_flops() == config.flops_per_token() * ids.numel()
    # The two parts: the math kernel's batched matmuls are attention's, every other matmul a weight's.
    attention = sum(flops for op, flops in counter.get_flop_counts()["Global"].items() if str(op) == "aten.bmm")
    assert attention == config.attention_flops_per_token() * ids.numel() > 0
    assert counter.get_total_flops() - attention == config.weight_flops_per_token() * ids.numel()


def test_records_carry_model_flops_and_mfu(tiny_run: Path):
    config = RunFolder(tiny_run).load_config().model
    records = [r for r in RunFolder(tiny_run).read_metrics() if "tokens_per_s" in r]
    assert records and all({"model_gflops_per_s", "mfu"} <= r.keys() for r in records)
    for r in records:
        assert r["model_gflops_per_s"] == pytest.approx(r["tokens_per_s"] * config.flops_per_token() / 1e9, abs=0.01)
        assert 0 < r["mfu"] < 2  # a share of a peak measured on the same device
    assert speed_text(6512.4, 14e6, 140e9) == "6,512 tok/s, 91 GFLOP/s, 65% MFU"
    assert speed_text(6512.4, 0, 0) == "6,512 tok/s"
