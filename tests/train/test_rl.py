"""RL: advantages, the policy-gradient step (a rewarded answer becomes more likely, a penalised
one less), a tiny end-to-end run with its metrics and curves, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cli_run import assert_one_line_error, run_cli
from glassgpt.chat_template import ChatTokens, render_prompt
from glassgpt.config import RLConfig
from glassgpt.data.tasks import problems
from glassgpt.engine import Engine
from glassgpt.runs import RunFolder, load_run
from glassgpt.train.rl import (
    PracticeBatches,
    Sample,
    group_advantages,
    policy_gradient_loss,
    rl,
    rl_config,
    samples_batch,
)


def test_advantages_are_rewards_minus_the_group_mean():
    assert group_advantages([1, 0, 0, 1]) == [0.5, -0.5, -0.5, 0.5]
    assert group_advantages([1, 0, 0, 0]) == [0.75, -0.25, -0.25, -0.25]
    assert group_advantages([1, 1, 1]) == [0, 0, 0]  # nothing to learn from a group that agrees


def test_std_advantages_divide_by_the_groups_sample_std():
    # [1, 0, 0, 0]: mean 0.25, sample std sqrt((0.5625 + 3 * 0.0625) / 3) = 0.5
    assert group_advantages([1, 0, 0, 0], divide_by_std=True) == pytest.approx([1.5, -0.5, -0.5, -0.5], rel=1e-3)
    assert group_advantages([1, 0, 0, 1], divide_by_std=True) == pytest.approx(
        [0.5 / 0.57735, -0.5 / 0.57735, -0.5 / 0.57735, 0.5 / 0.57735], rel=1e-3)
    assert group_advantages([0, 0, 0], divide_by_std=True) == [0, 0, 0]  # a group that agrees: 0, not nan


def answer_logprob(model, prompt: list[int], response: list[int]) -> float:
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids[:, :-1]).logits.float(), dim=-1)[0]
    return sum(logp[len(prompt) - 1 + j, t].item() for j, t in enumerate(response))


def test_a_step_raises_the_rewarded_answer_and_lowers_the_penalised_one(tiny_chat_run: Path):
    run = load_run(tiny_chat_run)
    model, tok = run.model.train(), run.tokenizer
    end = ChatTokens.of(tok).assistant_end
    prompt = render_prompt(tok, [{"role": "user", "content": "What is 4 + 4?"}])
    good, bad = tok.encode("Answer: 8") + [end], tok.encode("Answer: 9") + [end]
    rewards = [1.0, 0.0]
    samples = [Sample(prompt, ids, r, a, False) for ids, r, a in zip([good, bad], rewards,
                                                                     group_advantages(rewards), strict=True)]
    x, y, adv = samples_batch(samples, pad_id=2)
    assert (y[0] != -1).sum() == len(good) and y[0, len(prompt) - 1:len(prompt) - 1 + len(good)].tolist() == good
    assert adv[0].max() == 0.5 and adv[1].min() == -0.5 and adv[0, :len(prompt) - 1].eq(0).all()
    before = [answer_logprob(model, prompt, ids) for ids in (good, bad)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    policy_gradient_loss(model, (x, y, adv), normaliser=len(good) + len(bad)).backward()
    optimizer.step()
    after = [answer_logprob(model, prompt, ids) for ids in (good, bad)]
    assert after[0] > before[0] and after[1] < before[1]


def test_a_tiny_rl_run_logs_reward_length_and_held_out_accuracy(tiny_chat_run: Path, tmp_path: Path):
    config = rl_config(tiny_chat_run, rl={"tasks": ("addition",), "group_size": 2, "problems_per_step": 2,
                                          "max_response_tokens": 8, "heldout_problems": 2},
                       train={"max_steps": 2, "eval_every": 2})
    result = rl(config, tmp_path / "rl", show_progress=False, log=lambda _: None)
    folder = RunFolder(tmp_path / "rl")
    saved = folder.load_config()
    assert result.step == 2 and (saved.stage, saved.parent) == ("rl", str(tiny_chat_run))
    assert saved.rl is not None and saved.rl.group_size == 2
    records = folder.read_metrics()
    assert [r["step"] for r in records] == [0, 1, 2] and "heldout_accuracy" in records[0]
    for key in ("reward_mean", "response_length_mean", "truncated_frac"):
        assert 0 <= records[-1][key] and all(key in r for r in records[1:])
    assert 0 <= records[-1]["heldout_accuracy"] <= 1 and folder.rl_curves_path.is_file()


def test_bad_input(tiny_run: Path, tiny_chat_run: Path, tmp_path: Path, capsys):
    code, _, err = run_cli(capsys, "rl", "--model", str(tiny_chat_run), "--out", str(tmp_path / "a"),
                           "--group-size", "1")
    assert_one_line_error(code, err, "group size must be >= 2")
    code, _, err = run_cli(capsys, "rl", "--model", str(tiny_run), "--out", str(tmp_path / "b"))
    assert_one_line_error(code, err, "not a chat model: chat-tune it first with `glassgpt sft")
    assert not (tmp_path / "b").exists()
    code, _, err = run_cli(capsys, "rl", "--model", str(tiny_chat_run), "--task", "poetry")
    assert code == 2 and "invalid choice: 'poetry'" in err


def test_help(capsys):
    code, out, _ = run_cli(capsys, "rl", "--help")
    assert code == 0 and out.startswith("usage: glassgpt rl") and "advantage = reward -" in " ".join(out.split())


def test_answers_that_never_end_are_cut_to_fit_the_context_and_unrewarded(tiny_run: Path):
    run = load_run(tiny_run)  # a base model never writes <|assistant_end|>
    practice = PracticeBatches(Engine(run.model, run.tokenizer), RLConfig(group_size=3, max_response_tokens=500),
                               batch_size=4, seed=0)
    problem = problems("addition", "train", 1)[0]
    samples = practice.practise(problem, seed=1)
    assert len(samples) == 3
    for s in samples:
        assert s.truncated and s.reward == 0 and len(s.prompt_ids) + len(s.response_ids) < run.config.model.context_length
    x, y, adv = samples_batch(samples, pad_id=2)
    assert policy_gradient_loss(run.model, (x, y, adv), normaliser=10).item() == 0  # all advantages are 0
