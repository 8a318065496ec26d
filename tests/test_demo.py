"""The main job, end to end on the built-in corpus, with a short training budget."""

from pathlib import Path

import matplotlib.image
import pytest

from glassgpt.cli import main


@pytest.mark.slow
def test_demo_trains_reports_and_samples_at_three_temperatures(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert main(["demo", "--minutes", "0.25", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for temperature in ("[t=0]", "[t=0.8]", "[t=1.2]"):
        assert printed.count(temperature) == 4  # one per prompt
    report = (out / "report.md").read_text()
    assert "bits per byte" in report and "![loss curve](loss_curve.png)" in report
    assert report.count("at temperature") == 12
    image = matplotlib.image.imread(out / "loss_curve.png")
    assert image.shape[:2] == (450, 800) and image[..., :3].std() > 0.05
    # A second demo into the same folder must not silently destroy the first.
    assert main(["demo", "--minutes", "0.1", "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "model.safetensors").is_file()
