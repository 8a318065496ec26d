import dataclasses
import json
import math
from pathlib import Path

import matplotlib.image
import pytest
import torch

from glassgpt import runs as ckpt
from glassgpt.train import pretrain as train_module
from glassgpt.config import RunConfig, preset
from glassgpt.errors import GlassError
from glassgpt.train.pretrain import learning_rate, train


def tiny_config(data: Path, **train_changes) -> RunConfig:
    config = preset("tiny")
    changes = {"dtype": "fp32", **train_changes}
    return dataclasses.replace(config, data=str(data), train=dataclasses.replace(config.train, **changes))


def test_run_folder_has_weights_tokenizer_metrics_and_curve(tiny_run: Path):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "trainer_state.safetensors",
                 "metrics.jsonl", "loss_curve.png"):
        assert (tiny_run / name).is_file(), name
    records = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == sorted({r["step"] for r in records})
    assert all({"step", "train_loss", "tokens_per_s"} <= r.keys() for r in records)
    evals = [r for r in records if "val_loss" in r]
    assert evals and evals[-1]["step"] == 60
    assert all(0 < r["val_bpb"] < 8 for r in evals)
    # Training works: the loss falls well below a uniform guess over 512 tokens.
    assert records[-1]["train_loss"] < math.log(512) - 0.5
    image = matplotlib.image.imread(tiny_run / "loss_curve.png")
    assert image.shape[0] >= 300 and image.shape[1] >= 500
    assert image[..., :3].std() > 0.05


def test_learning_rate_warms_up_then_decays_by_cosine():
    config = preset("tiny")
    t = config.train
    assert learning_rate(config, 0, 0.0) == pytest.approx(t.lr / t.warmup_steps)
    assert learning_rate(config, t.warmup_steps, 0.0) == pytest.approx(t.lr)
    assert learning_rate(config, 100, 0.5) == pytest.approx(t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) / 2))
    assert learning_rate(config, 100, 1.0) == pytest.approx(t.lr * t.min_lr_ratio)


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path: Path, small_text_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    config = tiny_config(small_text_dir, max_steps=24, save_every=8, eval_every=8)
    straight = train(config, tmp_path / "straight", show_progress=False, log=lambda _: None)

    real_sample = train_module.sample_batch
    calls = {"n": 0}

    def sample_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 17:
            raise KeyboardInterrupt  # like Ctrl-C in the middle of step 17
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(train_module, "sample_batch", sample_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", show_progress=False, log=lambda _: None)
    monkeypatch.setattr(train_module, "sample_batch", real_sample)
    assert ckpt.load_run(tmp_path / "resumed").step == 16  # Ctrl-C saved the last finished step

    resumed = train(config, tmp_path / "resumed", resume=True, show_progress=False, log=lambda _: None)
    assert resumed.step == straight.step == 24
    a, b = ckpt.load_run(tmp_path / "straight").model, ckpt.load_run(tmp_path / "resumed").model
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=name)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 24  # no duplicated log lines after resume


def test_refuses_to_overwrite_a_run_and_resume_needs_one(tmp_path: Path, tiny_run: Path, small_text_dir: Path):
    with pytest.raises(GlassError, match="--resume"):
        train(tiny_config(small_text_dir), tiny_run, show_progress=False, log=lambda _: None)
    with pytest.raises(GlassError, match="no such run folder"):
        train(tiny_config(small_text_dir), tmp_path / "none", resume=True, show_progress=False, log=lambda _: None)


def test_char_and_gpt2_tokenizers_train(tmp_path: Path, small_text_dir: Path):
    for kind in ("char", "gpt2"):
        config = tiny_config(small_text_dir, max_steps=3, eval_every=3)
        vocab = 50257 if kind == "gpt2" else 512
        config = dataclasses.replace(config, tokenizer=dataclasses.replace(config.tokenizer, kind=kind, vocab_size=vocab))
        result = train(config, tmp_path / kind, show_progress=False, log=lambda _: None)
        run = ckpt.load_run(tmp_path / kind)
        assert run.tokenizer.kind == kind
        assert run.config.model.vocab_size == run.tokenizer.vocab_size
        assert result.val is not None and result.val.bpb > 0


def test_too_little_data_is_a_clear_error(tmp_path: Path):
    (tmp_path / "short.txt").write_text("A short text. " * 20)
    with pytest.raises(GlassError, match="too short"):
        train(tiny_config(tmp_path / "short.txt"), tmp_path / "run", show_progress=False, log=lambda _: None)
