import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from glassgpt import runs as ckpt
from glassgpt.errors import GlassError
from glassgpt.model import GPT
from glassgpt.train.pretrain import make_optimizer


def test_save_load_round_trip_is_exact(tiny_run: Path, tmp_path: Path):
    run = ckpt.load_run(tiny_run)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    ckpt.save_weights(copy, run.model, step=run.step)
    again = ckpt.load_run(copy)
    for p, q in zip(run.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    assert again.step == run.step == 60
    ids = torch.randint(0, run.config.model.vocab_size, (1, 16))
    torch.testing.assert_close(run.model(ids).logits, again.model(ids).logits, atol=0, rtol=0)


def test_trainer_state_restores_optimizer(tiny_run: Path):
    run = ckpt.load_run(tiny_run)
    model = GPT(run.config.model)
    optimizer = make_optimizer(model, run.config, torch.device("cpu"))
    state = ckpt.load_trainer_state(tiny_run, model, optimizer)
    assert state.step == 60 and state.tokens_seen > 0
    assert len(optimizer.state) == len(list(model.parameters()))
    for p, q in zip(model.state_dict().values(), run.model.state_dict().values(), strict=True):
        assert torch.equal(p, q)


def test_corrupted_and_mismatched_checkpoints_give_clear_errors(tiny_run: Path, tmp_path: Path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(GlassError, match="corrupted"):
        ckpt.load_run(broken)

    mismatched = tmp_path / "mismatched"
    shutil.copytree(tiny_run, mismatched)
    config = json.loads((mismatched / "config.json").read_text())
    config["model"]["d_model"] = 128
    (mismatched / "config.json").write_text(json.dumps(config))
    with pytest.raises(GlassError, match="does not match"):
        ckpt.load_run(mismatched)

    (mismatched / "config.json").write_text("{not json")
    with pytest.raises(GlassError, match="corrupted"):
        ckpt.load_run(mismatched)
    with pytest.raises(GlassError, match="not a glassgpt run folder"):
        ckpt.load_run(tmp_path)


def test_kill_9_during_training_never_leaves_an_unloadable_checkpoint(tmp_path: Path, small_text_dir: Path):
    out = tmp_path / "run"
    common = [sys.executable, "-m", "glassgpt.cli", "train", "--out", str(out), "--save-every", "1",
              "--max-steps", "100000", "--no-progress", "--dtype", "fp32"]
    first = [*common, "--preset", "tiny", "--data", str(small_text_dir)]
    env = {**os.environ, "GLASSGPT_CACHE": str(tmp_path / "cache")}
    last_step = -1
    for round_, delay in enumerate((0.7, 0.35, 0.9)):
        cmd = [*common, "--resume"] if round_ else first
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        # Wait until this process has saved at least one new checkpoint, then kill it mid-stream.
        while time.time() < deadline and proc.poll() is None:
            if (out / ckpt.WEIGHTS_FILE).exists() and ckpt.load_run(out).step > last_step:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        run = ckpt.load_run(out)  # must load, whatever moment the kill hit
        model = GPT(run.config.model)
        state = ckpt.load_trainer_state(out, model, make_optimizer(model, run.config, torch.device("cpu")))
        # The trainer state is written first and the weights right after: at most one step apart.
        assert run.step <= state.step <= run.step + 1
        assert run.step > last_step
        last_step = run.step
    assert len(list(out.glob(".*.tmp"))) <= 2  # only the last kill's temp files; resume cleans older ones


def test_atomic_writes_get_normal_permissions(tmp_path: Path):
    from glassgpt.atomic import atomic_write_text

    atomic_write_text(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert not list(tmp_path.glob(".*.tmp"))
