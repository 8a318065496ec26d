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
