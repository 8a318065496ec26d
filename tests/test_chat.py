"""Chatting: the chat-tuned tiny model answers in the template and stops; history that outgrows
the context drops its oldest turns; a base model is refused with a hint to run `sft`."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

import glassgpt.assets
from cli_run import assert_one_line_error, run_cli
from glassgpt.chat import ChatSession, load_chat_model
from glassgpt.chat_template import ChatTokens, render_prompt
from glassgpt.engine import Engine, SamplingConfig
from glassgpt.errors import GlassError
from glassgpt.runs import SHIPPED_CHAT_MODEL, load_run

GREEDY = SamplingConfig(temperature=0.0, max_new_tokens=20)



def test_one_question_from_the_command_line(tiny_chat_run: Path, capsys):
    code, out, err = run_cli(capsys, "chat", "--model", str(tiny_chat_run), "What is 2 + 3?", "-t", "0")
    assert code == 0 and out == "Answer: 5\n" and err == ""
    # the same answer from the int8 model (the quantized path of generate and serve, see tests/serve)
    code, out, err = run_cli(capsys, "chat", "--model", str(tiny_chat_run), "What is 2 + 3?", "-t", "0",
                             "--quantize", "int8")
    assert code == 0 and out == "Answer: 5\n" and err == ""


def test_the_session_answers_learned_questions_and_stops_at_the_end_token(tiny_chat_run: Path):
    session = ChatSession.of(load_chat_model(tiny_chat_run), GREEDY)
    streamed: list[str] = []
    reply = session.ask("Who are you?", on_text=streamed.append)
    assert (reply.text, reply.finish_reason, reply.finished) == ("I am glassgpt.", "stop_id", True)
    assert "".join(streamed).strip() == reply.text
    assert session.history[-1] == {"role": "assistant", "content": "I am glassgpt."}
    session.reset()
    assert session.history == []


def test_history_that_outgrows_the_context_loses_its_oldest_turns(tiny_chat_run: Path):
    session = ChatSession.of(load_chat_model(tiny_chat_run), SamplingConfig(temperature=0.0, max_new_tokens=8))
    for i in range(6):
        session.history += [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "ok"}]
    ids, dropped = session.prompt_for("What is 2 + 3?")
    assert dropped > 0 and len(ids) + 8 <= session.engine.context
    kept = session.history[2 * dropped:]
    assert ids == render_prompt(session.engine.tokenizer, [*kept, {"role": "user", "content": "What is 2 + 3?"}])
    reply = session.ask("What is 2 + 3?")
    assert reply.dropped_turns == dropped and session.history[0] == kept[0]


def test_interactive_commands(tiny_chat_run: Path, capsys, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("/temperature 0\nWhat is 2 + 3?\n/temperature x\n/reset\n/bogus\n"
                                                 "/quit\nnever asked\n"))
    code, out, _ = run_cli(capsys, "chat", "--model", str(tiny_chat_run))
    assert code == 0
    assert "temperature is now 0" in out and "glassgpt> Answer: 5" in out
    assert "usage: /temperature T" in out and "conversation forgotten" in out and "unknown command /bogus" in out
    assert "never asked" not in out


def test_a_base_model_is_refused_with_a_hint(tiny_run: Path, capsys):
    code, _, err = run_cli(capsys, "chat", "--model", str(tiny_run), "hi")
    assert_one_line_error(code, err, "is a pretrain model, not a chat model: chat-tune it first with "
                                     f"`glassgpt sft --model {tiny_run}")
    with pytest.raises(GlassError, match="not a chat model"):
        load_chat_model(tiny_run)


def test_without_model_chat_uses_the_own_chat_run_else_the_shipped_chat_model(
        tiny_chat_run: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    package = tmp_path / "package"
    monkeypatch.setattr(glassgpt.assets, "asset", lambda *parts: package.joinpath(*parts))
    code, _, err = run_cli(capsys, "chat", "What is 2 + 3?")
    assert_one_line_error(code, err, "no chat model at runs/chat and none shipped with this install")
    shutil.copytree(tiny_chat_run, package / SHIPPED_CHAT_MODEL)
    code, out, err = run_cli(capsys, "chat", "What is 2 + 3?", "-t", "0")
    assert code == 0 and out == "Answer: 5\n"
    shutil.rmtree(package / SHIPPED_CHAT_MODEL)
    shutil.copytree(tiny_chat_run, tmp_path / "runs" / "chat")  # the user's own chat run comes first
    code, out, err = run_cli(capsys, "chat", "What is 2 + 3?", "-t", "0")
    assert code == 0 and out == "Answer: 5\n"


def test_complete_ids_stops_at_a_stop_id(tiny_run: Path):
    run = load_run(tiny_run)
    engine = Engine(run.model, run.tokenizer)
    ids = render_prompt(run.tokenizer, [{"role": "user", "content": "Hi"}])
    first = engine.complete_ids(ids, GREEDY).completions[0]
    stopped = engine.complete_ids(ids, GREEDY, stop_ids=[first.token_ids[0]]).completions[0]
    assert stopped.finish_reason == "stop_id" and stopped.token_ids == [] and stopped.text == ""
    assert ChatTokens.of(run.tokenizer).assistant_start == ids[-1]


@pytest.mark.parametrize("command", ["sft", "chat", "eval-chat"])
def test_help(capsys, command: str):
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0 and out.startswith(f"usage: glassgpt {command}")
