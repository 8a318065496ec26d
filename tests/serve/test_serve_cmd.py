"""`glassgpt serve` as a user runs it: a startup line with the URL, a page and an API that answer,
a clear one-line error for a port that is taken."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from glassgpt.serve.app import listen

SRC = Path(__file__).resolve().parents[2] / "src"
START_TIMEOUT_S = 90


def glassgpt(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen([sys.executable, "-m", "glassgpt", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def test_serve_prints_its_url_and_serves_the_page_and_the_api(tiny_run: Path):
    process = glassgpt("serve", "--model", str(tiny_run), "--port", "0", "--api-key", "k")
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        url = url.group(0)
        page = urllib.request.urlopen(url, timeout=START_TIMEOUT_S).read().decode()
        assert "<title>glassgpt playground</title>" in page and "/static/app.js" in page
        assert "http" not in page.replace(url, "").split("<footer")[0].replace("http://www.w3.org", "")
        script = urllib.request.urlopen(url + "static/app.js", timeout=30).read().decode()
        assert "/look/next" in script
        request = urllib.request.Request(url + "v1/models", headers={"Authorization": "Bearer k"})
        models = json.loads(urllib.request.urlopen(request, timeout=30).read())
        assert models["data"][0]["id"] == tiny_run.name
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_taken_port_is_a_one_line_error(tiny_run: Path):
    taken = listen("127.0.0.1", 0)
    try:
        port = str(taken.getsockname()[1])
        process = glassgpt("serve", "--model", str(tiny_run), "--port", port)
        out, _ = process.communicate(timeout=START_TIMEOUT_S)
        assert process.returncode == 1
        assert out.strip().count("\n") == 0 and f"cannot listen on 127.0.0.1:{port}" in out and "--port" in out
    finally:
        taken.close()


def test_serve_quantize_int8_answers_as_the_int8_engine_does(tiny_run: Path):
    from glassgpt.engine import Engine, SamplingConfig
    from glassgpt.quantize import quantize_for_decoding
    from glassgpt.runs import load_run

    prompt, greedy = "It is a truth", SamplingConfig(temperature=0, max_new_tokens=12)
    run = load_run(tiny_run)
    float_logprobs = Engine(run.model, run.tokenizer).generate(prompt, greedy).completions[0].logprobs
    engine = Engine(quantize_for_decoding(run.model), run.tokenizer)
    expected = engine.generate(prompt, greedy).completions[0]
    process = glassgpt("serve", "--model", str(tiny_run), "--port", "0", "--quantize", "int8")
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+/", process.stdout.readline()).group(0)
        body = json.dumps({"model": tiny_run.name, "prompt": prompt, "max_tokens": 12, "temperature": 0,
                           "logprobs": 0}).encode()
        request = urllib.request.Request(url + "v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=START_TIMEOUT_S).read())
        choice = answer["choices"][0]
        assert choice["text"] == expected.text
        # the log-probabilities are the int8 model's, which differ a little from float32's
        served = choice["logprobs"]["token_logprobs"]
        assert served == pytest.approx(expected.logprobs, abs=1e-4)
        assert max(abs(a - b) for a, b in zip(served, float_logprobs, strict=False)) > 1e-4
        # the look views read the same (quantized) model
        look = urllib.request.Request(url + "look/next", data=json.dumps({"text": prompt}).encode(),
                                      headers={"Content-Type": "application/json"})
        assert urllib.request.urlopen(look, timeout=START_TIMEOUT_S).status == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
