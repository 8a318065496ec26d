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
