"""`glassgpt pipeline`: SFT then RL on the stages' own code, one table of base/SFT/RL, resumable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli_run import run_cli
from glassgpt.chat_eval import evaluate_chat
from glassgpt.errors import GlassError
from glassgpt.runs import RunFolder, load_run
from glassgpt.train.pipeline import PipelineResult, run_pipeline

SFT_TRAIN = {"max_steps": 3, "batch_size": 2, "warmup_steps": 1, "eval_every": 3, "save_every": 3, "dtype": "fp32"}
RL_SETTINGS = {"tasks": ("addition",), "group_size": 2, "problems_per_step": 1, "max_response_tokens": 8,
               "heldout_problems": 1}
RL_TRAIN = {"max_steps": 2, "eval_every": 2}


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def pipeline(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> PipelineResult:
    out = tmp_path_factory.mktemp("pipeline") / "p"
    return run_pipeline(tiny_run, out, problems=2, sft_train=SFT_TRAIN, rl_settings=RL_SETTINGS, rl_train=RL_TRAIN,
                        show_progress=False, log=quiet)


def test_the_stages_chain_base_to_sft_to_rl(pipeline: PipelineResult, tiny_run: Path):
    sft_config, rl_config = RunFolder(pipeline.sft_dir).load_config(), RunFolder(pipeline.rl_dir).load_config()
    assert (sft_config.stage, sft_config.parent) == ("sft", str(tiny_run))
    assert (rl_config.stage, rl_config.parent) == ("rl", str(pipeline.sft_dir))
    assert load_run(pipeline.sft_dir).step == 3 and load_run(pipeline.rl_dir).step == 2
    assert [m.label for m in pipeline.models] == ["base", "SFT", "RL"]
    assert pipeline.rl_tasks == ("addition",)


def test_the_report_holds_each_models_measured_accuracy_and_the_curves(pipeline: PipelineResult):
    report = pipeline.report_path.read_text(encoding="utf-8")
    for model in pipeline.models:  # the table is what evaluating the model again gives
        again = evaluate_chat(load_run(model.path), n=2, seed=0)
        assert [(s.task, s.accuracy) for s in again] == [(s.task, s.accuracy) for s in model.scores]
    row = next(line for line in report.splitlines() if line.startswith("| addition (RL) |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:5] == [f"{m.of('addition').accuracy:.1%}" for m in pipeline.models]
    assert cells[5:8] == [f"{m.of('addition').mean_tokens:.1f}" for m in pipeline.models]
    for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", report):
        assert (pipeline.report_path.parent / image).is_file(), image
    assert "What is" in report or "plus" in report or "+" in report  # an addition question is shown


def test_a_finished_pipeline_is_kept_on_resume_and_refused_without(pipeline: PipelineResult, tiny_run: Path):
    out = pipeline.report_path.parent
    weights = {d: (d / RunFolder.WEIGHTS).read_bytes() for d in (pipeline.sft_dir, pipeline.rl_dir)}
    with pytest.raises(GlassError, match="--resume"):
        run_pipeline(tiny_run, out, problems=1, show_progress=False, log=quiet)
    lines: list[str] = []
    again = run_pipeline(tiny_run, out, resume=True, problems=1, show_progress=False, log=lines.append)
    assert sum("is finished" in line for line in lines) == 2
    assert {d: (d / RunFolder.WEIGHTS).read_bytes() for d in (again.sft_dir, again.rl_dir)} == weights
    assert all(len(s.answers) <= 1 for m in again.models for s in m.scores)


def test_an_unfinished_stage_resumes(tiny_run: Path, tmp_path: Path):
    out = tmp_path / "p"
    run_pipeline(tiny_run, out, problems=1, sft_train={**SFT_TRAIN, "max_steps": 2, "save_every": 1},
                 rl_settings=RL_SETTINGS, rl_train={**RL_TRAIN, "max_steps": 1}, show_progress=False, log=quiet)
    rl_folder = RunFolder(out / "rl")
    saved = rl_folder.load_config()  # pretend RL was planned longer and stopped after step 1
    rl_folder.save_config(saved.for_resume(train={"max_steps": 2}))
    lines: list[str] = []
    run_pipeline(tiny_run, out, resume=True, problems=1, show_progress=False, log=lines.append)
    assert any("resuming" in line and "step 1 of 2" in line for line in lines)
    assert load_run(out / "rl").step == 2


def test_bad_input(tmp_path: Path, capsys):
    code, _, err = run_cli(capsys, "pipeline", "--out", str(tmp_path / "none"), "--resume")
    assert code == 1 and "no pipeline to resume" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "pipeline", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "p"))
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p" / "sft").exists()
