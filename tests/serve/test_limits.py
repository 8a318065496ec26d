"""Under load and abuse: bad input gets a 4xx in OpenAI's shape and the server keeps serving; the
bounded queue answers 429; a client that hangs up stops its generation; concurrent requests share
the model and each still gets exactly the engine's answer."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

import openai
import pytest

from glassgpt.engine import Engine, SamplingConfig
from glassgpt.errors import GlassError
from glassgpt.runs import LoadedRun, load_run
from glassgpt.serve.limits import ServeLimits
from live_server import Running, serving

WAIT_S = 60.0
LONG = 20_000  # new tokens that take far longer than any test waits: only a cancel ends them early


@pytest.fixture(scope="module")
def run(tiny_run: Path) -> LoadedRun:
    return load_run(tiny_run)


def request(running: Running, method: str, path: str, body: object = None, raw: bytes | None = None,
            headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=WAIT_S)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def health(running: Running) -> dict:
    status, body = request(running, "GET", "/health")
    assert status == 200 and body["status"] == "ok"
    return body


def wait_idle(running: Running) -> dict:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        state = health(running)
        if not state["running"] and state["queued"] == 0:
            return state
        time.sleep(0.05)
    raise AssertionError(f"the server did not become idle: {health(running)}")


def open_stream(running: Running, body: dict) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """A streaming request whose first event has arrived (so its job is running, or queued if `wait`)."""
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=WAIT_S)
    conn.request("POST", "/v1/completions", body=json.dumps({**body, "stream": True}),
                 headers={"Content-Type": "application/json"})
    return conn, conn.getresponse()


def hang_up(conn: http.client.HTTPConnection) -> None:
    conn.sock.shutdown(2) if conn.sock is not None else None
    conn.close()


def long_request(running: Running) -> dict:
    return {"model": running.run.path.name, "prompt": "The king", "max_tokens": LONG, "ignore_eos": True}


def test_limits_are_validated():
    with pytest.raises(GlassError, match="max-tokens"):
        ServeLimits(max_tokens=0)
    with pytest.raises(GlassError, match="max-queue"):
        ServeLimits(max_queue=0)
    assert ServeLimits().prompt_tokens(64) == 63
    assert ServeLimits(max_prompt_tokens=10).prompt_tokens(64) == 10


def test_bad_input_gets_a_4xx_with_a_message_and_the_server_keeps_serving(run):
    limits = ServeLimits(max_tokens=100, max_n=4, max_prompt_tokens=20)
    with serving(run, limits) as running:
        model = running.run.path.name
        ok = {"model": model, "prompt": "The king", "max_tokens": 3}
        cases = [
            ("POST", "/v1/completions", None, b"{not json", 400, "not valid JSON"),
            ("POST", "/v1/completions", [1, 2], None, 400, "body"),
            ("POST", "/v1/completions", {**ok, "temperature": "hot"}, None, 400, "temperature"),
            ("POST", "/v1/completions", {**ok, "logit_bias": {"1": 5}}, None, 400, "unknown field 'logit_bias'"),
            ("POST", "/v1/completions", {"prompt": "x"}, None, 400, "'model' is required"),
            ("POST", "/v1/completions", {**ok, "max_tokens": -1}, None, 400, "max_tokens"),
            ("POST", "/v1/completions", {**ok, "max_tokens": 10**9}, None, 400, "--max-tokens"),
            ("POST", "/v1/completions", {**ok, "max_tokens": 1.5}, None, 400, "max_tokens"),
            ("POST", "/v1/completions", {**ok, "temperature": -0.5}, None, 400, "temperature"),
            ("POST", "/v1/completions", {**ok, "top_p": 0}, None, 400, "top_p"),
            ("POST", "/v1/completions", {**ok, "n": 0}, None, 400, "n must be"),
            ("POST", "/v1/completions", {**ok, "n": 5}, None, 400, "--max-n"),
            ("POST", "/v1/completions", {**ok, "stop": ["a", "b", "c", "d", "e"]}, None, 400, "stop"),
            ("POST", "/v1/completions", {**ok, "stop": [""]}, None, 400, "stop"),
            ("POST", "/v1/completions", {**ok, "logprobs": 99}, None, 400, "logprobs"),
            ("POST", "/v1/completions", {**ok, "prompt": "word " * 50}, None, 400, "over this server's limit"),
            ("POST", "/v1/completions", {**ok, "prompt": [10**6]}, None, 400, "token ids"),
            ("POST", "/v1/completions", {**ok, "prompt": []}, None, 400, "prompt"),
            ("POST", "/v1/completions", {**ok, "frequency_penalty": 1}, None, 400, "not supported"),
            ("POST", "/v1/completions", {**ok, "model": "gpt-4"}, None, 404, "serves"),
            ("POST", "/v1/chat/completions", {"model": model, "messages": []}, None, 400, "base model"),
            ("GET", "/v1/completions", None, None, 405, "not allowed"),
            ("GET", "/v1/nothing", None, None, 404, "no such endpoint"),
            ("POST", "/look/attention", {"text": "The king", "layer": 99}, None, 400, "layer 99 does not exist"),
            ("POST", "/look/next", {"text": ""}, None, 400, "the text is empty"),
            ("POST", "/look/next", {"text": "a", "ids": [1]}, None, 400, "either"),
            ("POST", "/look/embeddings", {"analogy": ["a", "b"]}, None, 400, "3 words"),
        ]
        for method, path, body, raw, status, words in cases:
            got_status, got = request(running, method, path, body, raw)
            assert got_status == status, (path, body, raw, got)
            error = got["error"]
            assert words in error["message"], (body, error)
            assert "\n" not in error["message"]
            assert set(error) == {"message", "type", "param", "code"}
        status, body = request(running, "POST", "/v1/completions", ok)  # still serving
        assert status == 200 and body["choices"][0]["finish_reason"] in ("length", "stop")
        assert health(running)["failed"] == 2  # the bad layer and analogy reached the worker: user errors, no crash


def test_a_full_queue_answers_429_and_cancelled_jobs_free_it(run):
    with serving(run, ServeLimits(max_tokens=LONG, max_queue=1)) as running:
        first, first_response = open_stream(running, long_request(running))
        assert first_response.status == 200
        assert first_response.readline().startswith(b"data: ")  # generating now
        second, second_response = open_stream(running, long_request(running))  # waits in the queue
        assert second_response.status == 200
        assert health(running)["queued"] == 1
        client = openai.OpenAI(base_url=running.base_url, api_key="x", max_retries=0, timeout=WAIT_S)
        with pytest.raises(openai.RateLimitError) as err:
            client.completions.create(model=running.run.path.name, prompt="hi", max_tokens=2)
        assert "busy" in str(err.value)
        hang_up(second)
        hang_up(first)
        state = wait_idle(running)
        assert state["rejected"] == 1 and state["cancelled"] == 2 and state["completed"] == 0
        assert state["tokens_generated"] < LONG  # the first stopped early; the second never started
        got = client.completions.create(model=running.run.path.name, prompt="hi", max_tokens=2)
        assert got.usage.completion_tokens <= 2


def test_a_client_that_hangs_up_stops_its_generation(run):
    with serving(run, ServeLimits(max_tokens=LONG)) as running:
        # streaming: hang up after the first event
        conn, response = open_stream(running, long_request(running))
        assert response.readline().startswith(b"data: ")
        hang_up(conn)
        state = wait_idle(running)
        assert state["cancelled"] == 1 and state["tokens_generated"] < LONG
        # not streaming: hang up while the job runs
        conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=WAIT_S)
        conn.request("POST", "/v1/completions", body=json.dumps(long_request(running)),
                     headers={"Content-Type": "application/json"})
        deadline = time.monotonic() + WAIT_S
        while not health(running)["running"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        hang_up(conn)
        state = wait_idle(running)
        assert state["cancelled"] == 2 and state["completed"] == 0
        assert state["tokens_generated"] < 2 * LONG


def test_concurrent_clients_share_the_model_and_each_gets_the_engines_answer(run):
    engine = Engine(run.model, run.tokenizer)
    ids, _ = engine.encode_prompt("The queen")
    with serving(run) as running:
        client = openai.OpenAI(base_url=running.base_url, api_key="x", max_retries=0, timeout=WAIT_S)
        results: dict[int, str] = {}
        looks: list[dict] = []
        errors: list[BaseException] = []

        def ask(seed: int) -> None:
            try:
                stream = client.completions.create(model=running.run.path.name, prompt="The queen", max_tokens=20,
                                                   temperature=1.0, seed=seed, stream=True)
                results[seed] = "".join(chunk.choices[0].text for chunk in stream if chunk.choices)
            except BaseException as err:  # reported below
                errors.append(err)

        def look() -> None:
            status, body = request(running, "POST", "/look/attention", {"text": "The queen"})
            looks.append(body if status == 200 else {"status": status})

        threads = [threading.Thread(target=ask, args=(seed,)) for seed in range(6)]
        threads += [threading.Thread(target=look) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S)
        assert not errors
        for seed in range(6):
            ref = engine.generate_ids(ids, SamplingConfig(temperature=1.0, max_new_tokens=20, seed=seed))
            assert results[seed] == run.tokenizer.decode(ref.samples[0].token_ids)
        tokens = len(ids)
        assert [len(body["data"]["weights"][0][0]) for body in looks] == [tokens] * 3
        assert wait_idle(running)["completed"] == 9
