"""Built-in tasks: deterministic problems, a held-out split disjoint from training, the worked
steps agree with Python's arithmetic and str.count, and the checkers tell right / wrong / malformed."""

from __future__ import annotations

import random
import re

import pytest

from glassgpt.data.tasks import (
    PLACES,
    TASKS,
    Addition,
    Letters,
    Problem,
    Subtraction,
    Verdict,
    conversations,
    final_answer,
    get_task,
    problems,
    reward,
    split_of,
)
from glassgpt.errors import GlassError


@pytest.mark.parametrize("name", list(TASKS))
def test_problems_are_deterministic_by_seed_and_the_splits_never_share_a_problem(name):
    first = problems(name, "heldout", 20, seed=1)
    assert first == problems(name, "heldout", 20, seed=1)
    assert len({p.key for p in first}) == len(first) > 0
    train = problems(name, "train", 200, seed=1)
    assert all(split_of(p.key) == "train" for p in train)
    assert all(split_of(p.key) == "heldout" for p in first)
    assert not {p.key for p in train} & {p.key for p in first}
    if name not in ("identity",):  # the identity task has only a few questions
        assert problems(name, "heldout", 20, seed=2) != first


def test_about_a_tenth_of_problems_are_held_out():
    keys = [f"{a}+{b}" for a in range(60) for b in range(60)]
    share = sum(split_of(k) == "heldout" for k in keys) / len(keys)
    assert 0.07 < share < 0.13


def test_training_conversations_hold_no_held_out_question():
    heldout = {p.question for name in ("addition", "letters") for p in problems(name, "heldout", 300)}
    asked = {m["content"] for c in conversations(3000, seed=0) for m in c if m["role"] == "user"}
    assert asked and not asked & heldout


def test_conversations_mix_both_styles_at_every_difficulty():
    styles = {"direct": set(), "worked": set()}
    for conversation in conversations(3000, seed=0):
        for question, reply in zip(conversation[::2], conversation[1::2], strict=True):
            numbers = re.findall(r"\d+", question["content"])
            if reply["content"].startswith("Answer:"):
                styles["direct"].add(max(map(len, numbers), default=0))
            elif "Add the places from right to left:" in reply["content"]:
                styles["worked"].add(max(map(len, numbers)))
    assert {1, 2, 3, 4} <= styles["worked"] and {1, 2, 3, 4} <= styles["direct"]


@pytest.mark.parametrize("task", [Addition(), Subtraction()])
def test_worked_arithmetic_writes_the_digits_of_the_true_result(task):
    rng = random.Random(0)
    for _ in range(300):
        problem = task.make(rng)
        a, b = map(int, re.split(r"[+-]", problem.key))
        expected = a + b if isinstance(task, Addition) else a - b
        assert problem.answer == str(expected) and int(problem.answer) >= 0
        if isinstance(task, Addition):
            written = [int(d) for d in re.findall(r"write (\d)", "\n".join(problem.steps))]
        else:  # each column's line names its place and ends with its digit
            written = [int(line.rsplit("= ", 1)[1]) for line in problem.steps if line.split(":")[0] in PLACES]
        assert int("".join(map(str, reversed(written)))) == expected
        assert task.check(problem, task.respond(problem, "worked")) is Verdict.RIGHT
        assert task.respond(problem, "direct") == f"Answer: {expected}"


def test_worked_arithmetic_names_each_digit_by_its_place():
    assert Addition.steps(95, 5527) == (
        "95: 9 tens, 5 ones",
        "5527: 5 thousands, 5 hundreds, 2 tens, 7 ones",
        "Add the places from right to left:",
        "ones: 5 + 7 = 12: write 2, carry 1",
        "tens: 9 + 2 + 1 = 12: write 2, carry 1",
        "hundreds: 0 + 5 + 1 = 6: write 6",
        "thousands: 0 + 5 = 5: write 5")
    assert Subtraction.steps(502, 68) == (
        "502: 5 hundreds, 0 tens, 2 ones",
        "68: 6 tens, 8 ones",
        "Subtract the places from right to left:",
        "ones: 2 - 8: borrow 10, 12 - 8 = 4",
        "tens: 0 - 1 - 6: borrow 10, 10 - 1 - 6 = 3",
        "hundreds: 5 - 1 - 0 = 4")


def test_the_classic_example_and_letter_counts_match_str_count():
    task = Letters()
    steps = task.steps("strawberry", "r")
    assert steps[-1] == "s, t, r (1), a, w, b, e, r (2), r (3), y"
    rng = random.Random(0)
    for _ in range(300):
        problem = task.make(rng)
        letter, word = problem.key.split("@")
        assert problem.answer == str(word.count(letter)) and word in problem.question
        assert task.respond(problem, "worked").count(f"{letter} (") == word.count(letter)


def test_no_constant_letter_count_answers_most_letter_problems():
    answers = [min(int(p.answer), 2) for p in problems("letters", "heldout", 200)]
    shares = [answers.count(n) / len(answers) for n in (0, 1, 2)]
    assert max(shares) < 0.5 and min(shares) > 0.15, shares


@pytest.mark.parametrize(("response", "verdict"), [
    ("Answer: 936", Verdict.RIGHT),
    ("Add the places from right to left:\nones: 7 + 9 = 16: write 6, carry 1\nAnswer: 936", Verdict.RIGHT),
    ("Answer: 936.", Verdict.MALFORMED),
    ("Answer:936\n\n", Verdict.RIGHT),
    ("Answer: 1,000", Verdict.WRONG),
    ("Answer: 935", Verdict.WRONG),
    ("Answer: 936\nor maybe not", Verdict.MALFORMED),
    ("936", Verdict.MALFORMED),
    ("Answer: nine hundred", Verdict.MALFORMED),
    ("", Verdict.MALFORMED),
])
def test_the_arithmetic_checker_reads_only_the_final_line(response, verdict):
    problem = Problem("addition", "347+589", "What is 347 + 589?", "936")
    assert TASKS["addition"].check(problem, response) is verdict
    assert reward(verdict) == (1.0 if verdict is Verdict.RIGHT else 0.0)


def test_final_answer_is_the_last_lines():
    assert final_answer("steps\nAnswer: 12") == "12"
    assert final_answer("Answer: 12\nsteps") is None


def test_the_other_checkers():
    source = problems("source", "heldout", 30)
    moby = next(p for p in source if p.expected == "mobydick")
    check = TASKS["source"].check
    assert check(moby, "That passage is from Moby Dick, by Herman Melville.") is Verdict.RIGHT
    assert check(moby, "It is from the King James Bible.") is Verdict.WRONG
    assert check(moby, "Moby Dick, or Shakespeare?") is Verdict.WRONG
    assert check(moby, "I do not know.") is Verdict.MALFORMED
    quote = problems("quote", "heldout", 1)[0]
    assert TASKS["quote"].check(quote, quote.answer) is Verdict.RIGHT
    assert TASKS["quote"].check(quote, "zebra " + quote.answer) is Verdict.WRONG
    assert TASKS["quote"].check(quote, "  ") is Verdict.MALFORMED
    for name in ("character", "identity"):
        problem = problems(name, "heldout", 1)[0]
        assert TASKS[name].check(problem, problem.answer) is Verdict.RIGHT
        assert TASKS[name].check(problem, "A whale.") is Verdict.WRONG
        assert TASKS[name].check(problem, "") is Verdict.MALFORMED


def test_repeat_asks_for_its_text_verbatim_and_only_an_exact_copy_is_right():
    found = problems("repeat", "heldout", 60)
    kinds = {"digits": 0, "words": 0}
    for problem in found:
        assert problem.question.count(problem.answer) == 1 and problem.key == problem.answer
        kinds["digits" if problem.answer.isdigit() else "words"] += 1
    assert min(kinds.values()) > 5  # both kinds are asked
    check, problem = TASKS["repeat"].check, next(p for p in found if len(p.answer.split()) >= 4)
    assert check(problem, problem.answer) is Verdict.RIGHT
    assert check(problem, f"  {problem.answer.upper()} ") is Verdict.RIGHT  # case and spaces do not count
    assert check(problem, problem.answer.rsplit(" ", 1)[0]) is Verdict.WRONG  # a word short
    assert check(problem, problem.answer + " again") is Verdict.WRONG
    assert check(problem, "") is Verdict.MALFORMED


def test_famous_lines_continue_as_in_the_book():
    quotes = [p for p in problems("quote", "train", 300) + problems("quote", "heldout", 30)
              if "Call me Ishmael." in p.question]
    assert quotes and quotes[0].answer.startswith("Some years ago")


def test_unknown_task_and_split():
    with pytest.raises(GlassError, match="unknown task 'poetry': choose one of addition"):
        get_task("poetry")
    with pytest.raises(GlassError, match="split must be one of"):
        problems("addition", "test", 3)


def test_arithmetic_digits_are_bounded_by_the_places_it_can_name():
    assert Addition(max_digits=len(PLACES)).steps(999_999, 1)[-1] == "carry 1: write 1"
    with pytest.raises(GlassError, match="1 to 6 digits"):
        Addition(max_digits=7)
