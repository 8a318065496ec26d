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
from safetensors import safe_open

from glassgpt.cli import main
from glassgpt.errors import GlassError
from glassgpt.model import GPT
from glassgpt.runs import RunFolder, load_run
from glassgpt.runtime import load_full_state
from glassgpt.train.optim import make_optimizer


def test_save_load_round_trip_is_exact(tiny_run: Path, tmp_path: Path):
    run = load_run(tiny_run)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    RunFolder(copy).save_weights(run.model.state_dict(), step=run.step)
    assert "lm_head.weight" not in safe_open(RunFolder(copy).weights_path, "pt").keys()  # tied: stored once
    again = load_run(copy)
    for p, q in zip(run.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    assert again.step == run.step == 60
    ids = torch.randint(0, run.config.model.vocab_size, (1, 16))
    torch.testing.assert_close(run.model(ids).logits, again.model(ids).logits, atol=0, rtol=0)


def test_trainer_state_restores_optimizer(tiny_run: Path):
    run = load_run(tiny_run)
    model = GPT(run.config.model)
    optimizer = make_optimizer(model, run.config.train)
    saved = RunFolder(tiny_run).load_trainer_state()
    load_full_state(model, optimizer, saved.weights, saved.optimizer_state)
    assert saved.state.step == 60 and saved.state.tokens_seen > 0
    assert len(optimizer.state) == len(list(model.parameters()))
    for p, q in zip(model.state_dict().values(), run.model.state_dict().values(), strict=True):
        assert torch.equal(p, q)


def test_corrupted_and_mismatched_checkpoints_give_clear_errors(tiny_run: Path, tmp_path: Path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(GlassError, match="corrupted"):
        load_run(broken)

    mismatched = tmp_path / "mismatched"
    shutil.copytree(tiny_run, mismatched)
    config = json.loads((mismatched / "config.json").read_text())
    config["model"]["d_model"] = 128
    (mismatched / "config.json").write_text(json.dumps(config))
    with pytest.raises(GlassError, match="does not match"):
        load_run(mismatched)

    (mismatched / "config.json").write_text("{not json")
    with pytest.raises(GlassError, match="corrupted"):
        load_run(mismatched)
    with pytest.raises(GlassError, match="not a glassgpt run folder"):
        load_run(tmp_path)


def test_kill_9_during_training_never_leaves_an_unloadable_checkpoint(tmp_path: Path, small_text_dir: Path):
    out = tmp_path / "run"
    common = [sys.executable, "-m", "glassgpt", "train", "--out", str(out), "--save-every", "1",
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
            if RunFolder(out).has_weights() and load_run(out).step > last_step:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        run = load_run(out)  # must load, whatever moment the kill hit
        state = RunFolder(out).load_trainer_state().state
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


# A training process that dies hard at the moment one file of a save is being written: either
# with the temp file half written, or with it complete just before the rename onto the target.
_DIE_WHILE_SAVING = """
import os, sys
from pathlib import Path

target, nth, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
real_replace, seen = os.replace, [0]

def replace(src, dst):
    if Path(dst).name == target:
        seen[0] += 1
        if seen[0] == nth:
            if mode == "half":
                os.truncate(src, os.path.getsize(src) // 2)
            os._exit(17)
    return real_replace(src, dst)

os.replace = replace
from glassgpt.cli import main
sys.exit(main(sys.argv[4:]))
"""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, small_text_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main(_train_args(out, small_text_dir)) == 0
    return out


def _train_args(out: Path, data: Path | None) -> list[str]:
    """Train the tiny preset for 6 steps, saving every 2; with data None, resume instead."""
    start = ["--preset", "tiny", "--data", str(data)] if data is not None else ["--resume"]
    return ["train", *start, "--out", str(out), "--max-steps", "6", "--save-every", "2", "--eval-every", "100",
            "--log-every", "1", "--dtype", "fp32", "--no-progress"]


@pytest.mark.parametrize("mode", ["half", "before_rename"])
@pytest.mark.parametrize("target", [RunFolder.TRAINER_STATE, RunFolder.WEIGHTS, RunFolder.LOSS_CURVE])
def test_a_hard_exit_while_saving_loses_nothing(tmp_path: Path, small_text_dir: Path, uninterrupted: Path,
                                                target: str, mode: str):
    out = tmp_path / "run"
    script = tmp_path / "die.py"
    script.write_text(_DIE_WHILE_SAVING)
    # The second save (step 4) dies while writing `target`.
    proc = subprocess.run([sys.executable, str(script), target, "2", mode, *_train_args(out, small_text_dir)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 17, proc.stderr
    assert list(out.glob(f".{target}.*.tmp")), "the kill should leave the temp file behind"

    run = load_run(out)  # loads, whatever the moment
    saved = RunFolder(out).load_trainer_state()
    # Trainer state, then weights, then the picture: the step-4 files not yet renamed stay at step 2.
    expected = {RunFolder.TRAINER_STATE: (2, 2), RunFolder.WEIGHTS: (4, 2), RunFolder.LOSS_CURVE: (4, 4)}
    assert (saved.state.step, run.step) == expected[target]

    assert main(_train_args(out, None)) == 0
    assert not list(out.glob(".*.tmp"))  # resume cleaned the half-written files
    resumed, straight = load_run(out), load_run(uninterrupted)
    assert resumed.step == straight.step == 6
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(q, p, atol=1e-6, rtol=0, msg=name)
    assert [r["step"] for r in RunFolder(out).read_metrics()] == [r["step"] for r in RunFolder(uninterrupted).read_metrics()]


def test_a_copy_for_inference_in_bf16_loads_and_predicts_like_the_run(tiny_run: Path, tmp_path: Path):
    copy = RunFolder(tiny_run).copy_for_inference(tmp_path / "shipped", torch.bfloat16)
    assert not copy.has_trainer_state() and copy.metrics_path.is_file() and copy.loss_curve_path.is_file()
    assert copy.weights_path.stat().st_size < 0.6 * RunFolder(tiny_run).weights_path.stat().st_size
    original, shipped = load_run(tiny_run), load_run(copy.path)
    assert shipped.step == original.step and next(shipped.model.parameters()).dtype == torch.float32
    ids = torch.tensor([original.tokenizer.encode("It is a truth universally acknowledged")])
    with torch.no_grad():
        a, b = original.model(ids).logits, shipped.model(ids).logits
    assert (a - b).abs().max() < 0.1  # bf16 rounding of the weights only
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.9
