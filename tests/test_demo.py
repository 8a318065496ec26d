"""The main job, end to end on the built-in corpus, with a short training budget."""

import json
import re
from pathlib import Path

import pytest

from glassgpt.cli import main
from glassgpt.demo import verdict
from pixels import assert_line_follows, assert_markers, axes_box, read_rgb


@pytest.mark.slow
def test_demo_trains_reports_and_samples_at_three_temperatures(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    # a step budget, not a time budget: a busy machine still logs enough steps to draw a curve
    assert main(["demo", "--minutes", "30", "--max-steps", "25", "--dtype", "fp32", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "; float32 on " in printed  # --dtype fp32 holds even where bf16 is faster
    assert json.loads((out / "config.json").read_text())["train"]["dtype"] == "fp32"
    for temperature in ("[t=0]", "[t=0.8]", "[t=1.2]"):
        assert printed.count(temperature) == 4  # one per prompt
    report = (out / "report.md").read_text()
    assert "bits per byte" in report and "![loss curve](loss_curve.png)" in report
    assert report.count("at temperature") == 12
    # one final validation bits per byte: the last one measured, printed and reported alike
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = f"{[r for r in records if 'val_bpb' in r][-1]['val_bpb']:.3f}"
    assert f"final validation: {final} bits per byte" in printed
    assert f"final validation: **{final} bits per byte**" in report
    # counting for scale: the character 8-gram on the same validation text, printed and reported alike
    counting = re.search(r"counting, for scale: character 8-gram (\d\.\d{3}) bits per byte", printed)
    assert counting, printed
    assert 1.5 < float(counting.group(1)) < 2.5  # measured 1.920 on the built-in split
    assert f"scores {counting.group(1)} bits per byte on the same validation text" in report
    assert verdict(float(final), float(counting.group(1))) in printed
    # the loss curve draws the train loss of every logged step, and the validation points
    image = read_rgb(out / "loss_curve.png")
    assert image.shape[:2] == (450, 800)
    steps = [r["step"] for r in records if "train_loss" in r]
    train = [r["train_loss"] for r in records if "train_loss" in r]
    val_steps = [r["step"] for r in records if "val_loss" in r]
    val = [r["val_loss"] for r in records if "val_loss" in r]
    box = axes_box(image)
    # the last step is both logged and evaluated: its validation marker (about 5 px across the
    # middle) hides the train line's last pixels
    assert steps[-1] == val_steps[-1]
    assert_line_follows(image, box, "tab:blue", 0.7, train, train + val, log=False, xs=steps, end_tol=6)
    assert_markers(image, box, [("tab:orange", val_steps, val)], 1, train, steps)
    # A second demo into the same folder must not silently destroy the first.
    assert main(["demo", "--minutes", "0.1", "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "model.safetensors").is_file()


def test_verdict_says_which_model_wins_by_how_much():
    assert verdict(1.8, 1.92) == "the GPT is 0.120 better"
    assert verdict(2.0, 1.92).startswith("the GPT is 0.080 worse")
    assert verdict(None, 1.92) == "the GPT was not evaluated"
    # the gap is the difference of the numbers as printed: 2.938 - 1.920, not 2.9376 - 1.9204
    assert verdict(2.9376, 1.9204).startswith("the GPT is 1.018 worse")


def test_demo_trains_at_a_smaller_batch_where_this_machine_makes_few_tokens_in_its_minutes(monkeypatch, tmp_path):
    import dataclasses

    import torch

    from glassgpt import demo
    from glassgpt.config import preset

    config, lines = preset("demo"), []
    assert demo.recipe_for_machine(config, demo.SMALL_BUDGET_TOKENS, lines.append) == config and lines == []
    small = demo.recipe_for_machine(config, 0.9e6, lines.append)
    assert (small.train.batch_size, small.train.warmup_steps) == (32, 10)
    assert dataclasses.replace(small.train, batch_size=config.train.batch_size,
                               warmup_steps=config.train.warmup_steps) == config.train  # nothing else moves
    assert small.model == config.model
    assert lines == ["demo: ~0.9M training tokens expected in 4 minutes here (fewer than 1.8M): batch 32 and 10 "
                     "warmup steps instead of 64 and 50, which learn more from so few tokens"]

    # Tokens expected: the measured peak (bf16's only where asked for) at DEMO_MFU over the budget.
    peaks = {torch.float32: 100e9, torch.bfloat16: 1e9}
    monkeypatch.setattr(demo, "matmul_flops", lambda device, dtype: peaks[dtype])
    cpu = torch.device("cpu")
    expected = 100e9 * demo.DEMO_MFU * 240 / config.model.flops_per_token()
    assert demo.expected_tokens(config, cpu) == pytest.approx(expected)
    bf16 = dataclasses.replace(config, train=dataclasses.replace(config.train, dtype="bf16"))
    assert demo.expected_tokens(bf16, cpu) == pytest.approx(expected / 100)

    # The demo itself: a slow machine's time budget trains at batch 32; a step budget never changes.
    trained = []

    def fake_pretrain(config, out_dir, **kwargs):
        trained.append(config.train)
        raise KeyboardInterrupt  # stop before any training

    monkeypatch.setattr(demo, "pretrain", fake_pretrain)
    for max_steps in (None, 300):
        with pytest.raises(KeyboardInterrupt):
            demo.run_demo(tmp_path / "d", 4.0, cache_dir=None, device=cpu, log=lambda _: None, max_steps=max_steps)
    assert [t.batch_size for t in trained] == [32, 64]
    monkeypatch.setitem(peaks, torch.float32, 1e13)  # a fast machine keeps the preset's batch
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(tmp_path / "d", 4.0, cache_dir=None, device=cpu, log=lambda _: None)
    assert trained[-1].batch_size == 64
