"""Chat tuning end to end on the tiny model: the answers' loss falls, the run folder records its
stage and parent, and bad input is refused without touching what is saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import glassgpt.train.sft as sft_module
from cli_run import assert_one_line_error, run_cli
from glassgpt.data.chats import fixed_batches, read_conversations, render_all
from glassgpt.runs import RunFolder, load_run
from glassgpt.train.sft import SFT_TRAIN, answer_loss, sft, sft_config


def loss_on(run_dir: Path, chats: Path) -> float:
    run = load_run(run_dir)
    batches = fixed_batches(render_all(run.tokenizer, read_conversations(chats)),
                            run.config.model.context_length, 2, 8)
    return answer_loss(run.model, batches, torch.float32, torch.device("cpu"))


def test_sft_lowers_the_loss_of_the_trained_answers_and_records_its_lineage(tiny_run, tiny_chat_run, chats_jsonl):
    assert loss_on(tiny_chat_run, chats_jsonl) < 0.5 * loss_on(tiny_run, chats_jsonl)
    config = RunFolder(tiny_chat_run).load_config()
    assert (config.stage, config.parent, config.data) == ("sft", str(tiny_run), str(chats_jsonl))
    assert config.model == RunFolder(tiny_run).load_config().model
    assert (config.train.max_steps, config.train.lr, config.train.optimizer) == (80, 1e-2, SFT_TRAIN.optimizer)
    records = RunFolder(tiny_chat_run).read_metrics()
    assert records[-1]["step"] == 80 and "val_loss" in records[-1]
    assert RunFolder(tiny_chat_run).loss_curve_path.is_file()


def test_sft_resumes_where_it_stopped(tiny_run, chats_jsonl, tmp_path):
    train = {"max_steps": 4, "batch_size": 2, "warmup_steps": 1, "eval_every": 2, "save_every": 2, "dtype": "fp32"}
    sft(sft_config(tiny_run, data=str(chats_jsonl), train=train), tmp_path / "a", show_progress=False,
        log=lambda _: None)
    resumed = RunFolder(tmp_path / "a").load_config().for_resume(train={"max_steps": 6})
    result = sft(resumed, tmp_path / "a", resume=True, show_progress=False, log=lambda _: None)
    assert result.step == 6 and RunFolder(tmp_path / "a").read_metrics()[-1]["step"] == 6



def test_bad_input_is_one_line_and_keeps_a_trained_run(tiny_run, tiny_chat_run, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                            {"role": "assistant", "content": "hello"}]}) + "\n{oops\n")
    code, _, err = run_cli(capsys, "sft", "--model", str(tiny_run), "--data", str(bad), "--out", str(tmp_path / "x"))
    assert_one_line_error(code, err, f"{bad} line 2 is not valid JSON")
    assert not (tmp_path / "x").exists()
    before = (tiny_chat_run / "model.safetensors").read_bytes()
    code, _, err = run_cli(capsys, "sft", "--model", str(tiny_run), "--out", str(tiny_chat_run), "--max-steps", "1")
    assert_one_line_error(code, err, "already holds a trained run")
    assert (tiny_chat_run / "model.safetensors").read_bytes() == before
    code, _, err = run_cli(capsys, "sft", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "y"))
    assert_one_line_error(code, err, "no such run folder")


@pytest.mark.parametrize("options", [["--max-steps", "0"], ["--lr", "-1"]])
def test_bad_options(tiny_run, tmp_path, capsys, options):
    code, _, err = run_cli(capsys, "sft", "--model", str(tiny_run), "--out", str(tmp_path / "z"), *options)
    assert code == 2 and "must be" in err


def test_sft_lets_the_model_s_own_step_weigh_in_on_auto_dtype(tiny_run, chats_jsonl, tmp_path, monkeypatch):
    """`--dtype auto` hands `choose_dtype` a timer of this model's own training step, as pretraining does."""
    asked = {}

    def spy(setting, device, step_seconds=None):
        asked["setting"] = setting
        asked["seconds"] = {dtype: step_seconds(dtype) for dtype in (torch.float32, torch.bfloat16)} \
            if step_seconds else None
        return torch.float32

    monkeypatch.setattr(sft_module, "choose_dtype", spy)
    train = {"max_steps": 1, "batch_size": 2, "warmup_steps": 0, "eval_every": 1, "save_every": 1, "dtype": "auto"}
    sft(sft_config(tiny_run, data=str(chats_jsonl), train=train), tmp_path / "a", show_progress=False,
        log=lambda _: None)
    assert asked["setting"] == "auto" and asked["seconds"] is not None
    assert all(seconds > 0 for seconds in asked["seconds"].values())
