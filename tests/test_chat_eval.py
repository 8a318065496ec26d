"""eval-chat: held-out accuracy per task, through the template for chat models and a few-shot
prompt for base models."""

from __future__ import annotations

from pathlib import Path

from cli_run import assert_one_line_error, run_cli
from glassgpt.chat_eval import answer, evaluate_chat, few_shot_prompt, total
from glassgpt.data.tasks import TASKS, Problem, Verdict, problems
from glassgpt.engine import Engine
from glassgpt.runs import load_run


def test_a_learned_answer_is_scored_right(tiny_chat_run: Path):
    run = load_run(tiny_chat_run)
    problem = Problem("addition", "2+3", "What is 2 + 3?", "5")
    result = answer(Engine(run.model, run.tokenizer), TASKS["addition"], problem, chat=True)
    assert (result.text, result.verdict, result.finish_reason) == ("Answer: 5", Verdict.RIGHT, "stop_id")
    wrong = Problem("addition", "2+4", "What is 2 + 3?", "6")
    assert answer(Engine(run.model, run.tokenizer), TASKS["addition"], wrong, chat=True).verdict is Verdict.WRONG


def test_scores_cover_the_held_out_problems(tiny_chat_run: Path):
    scores = evaluate_chat(load_run(tiny_chat_run), ["addition", "identity"], n=3)
    assert [s.task for s in scores] == ["addition", "identity"]
    assert [a.problem for a in scores[0].answers] == problems("addition", "heldout", 3)
    overall = total(scores)
    assert len(overall.answers) == 6 and 0 <= overall.accuracy <= 1


def test_base_models_get_solved_examples_first():
    task = TASKS["addition"]
    examples = [Problem("addition", "1+1", "What is 1 + 1?", "2")]
    prompt = few_shot_prompt(task, Problem("addition", "2+2", "What is 2 + 2?", "4"), examples)
    assert prompt == "User: What is 1 + 1?\nAssistant: Answer: 2\n\nUser: What is 2 + 2?\nAssistant:"


def test_the_command_prints_a_table_for_base_and_chat_models(tiny_run: Path, tiny_chat_run: Path, capsys):
    code, out, _ = run_cli(capsys, "eval-chat", "--model", str(tiny_chat_run), "--task", "addition", "--problems", "2")
    assert code == 0 and "chat template" in out
    assert out.strip().splitlines()[-1].split()[:2] == ["addition", "2"]
    code, out, _ = run_cli(capsys, "eval-chat", "--model", str(tiny_run), "--task", "letters", "--problems", "2",
                           "--show")
    assert code == 0 and "few-shot prompt (base model)" in out
    shown = [line for line in out.splitlines() if line.startswith("[")]
    assert len(shown) == 2 and all(line.split("]")[0][1:] in ("right", "wrong", "malformed") for line in shown)


def test_unknown_task(tiny_chat_run: Path, capsys):
    code, _, err = run_cli(capsys, "eval-chat", "--model", str(tiny_chat_run), "--task", "poetry")
    assert_one_line_error(code, err, "unknown task 'poetry': choose one of addition, subtraction")


def test_rl_practises_addition_by_default_and_every_task_is_known():
    from glassgpt.config import RLConfig

    assert RLConfig().tasks == ("addition",)
    assert set(RLConfig().tasks) <= set(TASKS)
