"""Accuracy on the built-in tasks' held-out problems, for base, chat-tuned and RL models alike.

Every answer is greedy (temperature 0) and checked by its task (`glassgpt.data.tasks`): right,
wrong, or malformed (no final answer in the expected form). A chat model (stage sft or rl) gets
each question through the chat template and answers until `<|assistant_end|>`. A base model has
never seen the template, so it gets a few-shot text prompt instead: a few solved training
problems of the same task as "User: ... / Assistant: ..." lines, then the question, and it
answers until a blank line. Both see the same held-out problems, so one table compares them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from glassgpt.chat_template import ChatTokens, is_chat_stage, render_prompt
from glassgpt.data.tasks import TASKS, Problem, Task, Verdict, get_task, problems
from glassgpt.engine import Engine, SamplingConfig
from glassgpt.runs import LoadedRun

FEW_SHOT = 3  # solved examples in a base model's prompt (fewer when they do not fit the context)
MAX_ANSWER_TOKENS = 200
# A base model is shown direct answers only (the longest, identity's, is under 64 tokens); a
# model that has not learned to stop would otherwise run on to MAX_ANSWER_TOKENS every time.
MAX_FEW_SHOT_ANSWER_TOKENS = 64


@dataclass(frozen=True)
class Answer:
    problem: Problem
    text: str
    verdict: Verdict
    num_tokens: int
    finish_reason: str


@dataclass(frozen=True)
class TaskScore:
    task: str
    answers: tuple[Answer, ...]

    def count(self, verdict: Verdict) -> int:
        return sum(a.verdict is verdict for a in self.answers)

    @property
    def accuracy(self) -> float:
        return self.count(Verdict.RIGHT) / max(1, len(self.answers))

    @property
    def mean_tokens(self) -> float:
        return sum(a.num_tokens for a in self.answers) / max(1, len(self.answers))


def few_shot_prompt(task: Task, problem: Problem, examples: Sequence[Problem]) -> str:
    """Solved examples (direct answers) and the question, as plain text a base model continues."""
    shots = "".join(f"User: {p.question}\nAssistant: {task.respond(p, 'direct')}\n\n" for p in examples)
    return f"{shots}User: {problem.question}\nAssistant:"


def answer(engine: Engine, task: Task, problem: Problem, chat: bool, examples: Sequence[Problem] = (),
           max_new_tokens: int = MAX_ANSWER_TOKENS) -> Answer:
    """The model's greedy answer to one problem, checked."""
    tokenizer, context = engine.tokenizer, engine.context
    if chat:
        ids = render_prompt(tokenizer, [{"role": "user", "content": problem.question}])
        stop_ids, stop = [ChatTokens.of(tokenizer).assistant_end], ()
    else:
        examples, max_new_tokens = list(examples), min(max_new_tokens, MAX_FEW_SHOT_ANSWER_TOKENS)
        while True:  # drop examples until the prompt leaves room for an answer
            ids = [tokenizer.bos_id, *tokenizer.encode(few_shot_prompt(task, problem, examples))]
            if len(ids) + min(max_new_tokens, context // 2) <= context or not examples:
                break
            examples.pop(0)
        stop_ids, stop = [], ("\n\n", "\nUser:")
    room = max(1, min(max_new_tokens, context - len(ids)))
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=room, stop=stop)
    completion = engine.complete_ids(ids, sampling, stop_ids=stop_ids).completions[0]
    text = completion.text.strip()
    return Answer(problem, text, task.check(problem, text), len(completion.token_ids), completion.finish_reason)


def evaluate_chat(run: LoadedRun, task_names: Sequence[str] | None = None, n: int = 50, seed: int = 0,
                  max_new_tokens: int = MAX_ANSWER_TOKENS,
                  on_answer: Callable[[Answer], None] | None = None) -> list[TaskScore]:
    """Greedy accuracy of `run` on `n` held-out problems of each task (all tasks by default)."""
    return evaluate_engine(Engine(run.model, run.tokenizer), is_chat_stage(run.config.stage), task_names, n, seed,
                           max_new_tokens, on_answer)


def evaluate_engine(engine: Engine, chat: bool, task_names: Sequence[str] | None = None, n: int = 50,
                    seed: int = 0, max_new_tokens: int = MAX_ANSWER_TOKENS,
                    on_answer: Callable[[Answer], None] | None = None) -> list[TaskScore]:
    """`evaluate_chat` for a model being trained (through the template when `chat`)."""
    tasks = [get_task(name) for name in (task_names or TASKS)]
    scores = []
    for task in tasks:
        examples = problems(task, "train", FEW_SHOT, seed=seed) if not chat else []
        answers = []
        for problem in problems(task, "heldout", n, seed=seed):
            result = answer(engine, task, problem, chat, examples, max_new_tokens)
            answers.append(result)
            if on_answer is not None:
                on_answer(result)
        scores.append(TaskScore(task.name, tuple(answers)))
    return scores


def total(scores: Sequence[TaskScore]) -> TaskScore:
    """All answers of several tasks as one score (the overall accuracy)."""
    return TaskScore("all", tuple(a for s in scores for a in s.answers))
