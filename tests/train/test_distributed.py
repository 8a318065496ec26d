"""Training in several processes with torchrun (DDP over gloo on this CPU)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from glassgpt.runs import RunFolder, load_run
from glassgpt.runtime import Distributed

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def _train(out: Path, data: Path, batch_size: int, steps: int) -> list[str]:
    return ["-m", "glassgpt", "train", "--preset", "tiny", "--data", str(data), "--out", str(out),
            "--batch-size", str(batch_size), "--max-steps", str(steps), "--eval-every", "4", "--log-every", "1",
            "--dtype", "fp32", "--device", "cpu", "--no-progress"]


def _env(tmp_path: Path) -> dict[str, str]:
    # One thread everywhere, as torchrun gives each worker: the one-process reference then sums
    # in a fixed order too, whatever else the machine is running.
    return {**os.environ, "GLASSGPT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory, small_text_dir: Path) -> Path:
    """8 steps of the tiny preset in one process with batch 8."""
    tmp = tmp_path_factory.mktemp("one")
    done = subprocess.run([sys.executable, *_train(tmp / "run", small_text_dir, 8, 8)], env=_env(tmp),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return tmp / "run"


def _assert_same_training(a_dir: Path, b_dir: Path) -> None:
    a, b = RunFolder(a_dir).read_metrics(), RunFolder(b_dir).read_metrics()
    assert [r["step"] for r in a] == [r["step"] for r in b]
    # Stated tolerance: the same windows and the same averaged gradients, summed in a different
    # order (two processes, one thread each), so only float rounding differs.
    for x, y in zip(a, b, strict=True):
        assert abs(x["train_loss"] - y["train_loss"]) < 1e-4, (x, y)
        assert x["tokens_seen"] == y["tokens_seen"]
        if "val_loss" in x:
            assert abs(x["val_loss"] - y["val_loss"]) < 1e-4
    first, second = load_run(a_dir).model, load_run(b_dir).model
    for (name, p), q in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(q, p, atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_two_processes_with_batch_b_equal_one_with_batch_2b(tmp_path: Path, small_text_dir: Path,
                                                            one_process: Path, sharding: str):
    flags = ["--fsdp"] if sharding == "fsdp" else []
    two = subprocess.run([*TORCHRUN, *_train(tmp_path / "two", small_text_dir, 4, 8), *flags], env=_env(tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr
    assert f"2 processes ({sharding.upper()})" in two.stdout
    assert two.stdout.count("final validation") == 1  # only rank 0 prints
    assert [r["step"] for r in RunFolder(tmp_path / "two").read_metrics()] == list(range(1, 9))
    _assert_same_training(one_process, tmp_path / "two")
    metrics = RunFolder(tmp_path / "two").read_metrics()
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"] - 0.3  # it trained

    if sharding == "fsdp":
        # A sharded run's checkpoint resumes in one process like a one-process checkpoint does.
        shutil.copytree(one_process, tmp_path / "one")
        for run in (tmp_path / "one", tmp_path / "two"):
            resume = ["-m", "glassgpt", "train", "--out", str(run), "--resume", "--max-steps", "10", "--batch-size", "8",
                      "--device", "cpu", "--no-progress"]
            done = subprocess.run([sys.executable, *resume], env=_env(tmp_path), capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, done.stderr
        _assert_same_training(tmp_path / "one", tmp_path / "two")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker processes through /proc")
def test_killing_one_process_stops_every_process(tmp_path: Path, small_text_dir: Path):
    out = tmp_path / "run"
    proc = subprocess.Popen([*TORCHRUN, *_train(out, small_text_dir, 4, 100_000)], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None and not RunFolder(out).read_metrics():
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1]
        workers = _children(proc.pid)
        assert len(workers) == 2
        os.kill(workers[1], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    time.sleep(0.5)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()
                and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]]
    assert "Signal 9 (SIGKILL)" in stderr or "another training process stopped" in stderr, stderr[-2000:]


def test_distributed_from_torchrun_variables():
    assert Distributed.from_env({}) == Distributed(0, 1, 0)
    d = Distributed.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (d.rank, d.world_size, d.local_rank, d.is_main, d.enabled) == (3, 4, 1, False, True)
