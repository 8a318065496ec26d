"""A live glassgpt server for tests: the real app under uvicorn on 127.0.0.1, a free port, in a thread.

Tests import it as `from live_server import serving` (pyproject puts tests/ on the path).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator

import uvicorn

from glassgpt.runs import LoadedRun
from glassgpt.serve.app import create_app, listen, url_of
from glassgpt.serve.limits import ServeLimits

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclasses.dataclass
class Running:
    url: str  # http://127.0.0.1:PORT/
    run: LoadedRun
    app: object

    @property
    def base_url(self) -> str:  # what the openai client wants
        return self.url + "v1"

    @property
    def port(self) -> int:
        return int(self.url.rstrip("/").rsplit(":", 1)[1])


@contextlib.contextmanager
def serving(run: LoadedRun, limits: ServeLimits | None = None, api_key: str | None = None) -> Iterator[Running]:
    """The app serving `run` on a free loopback port until the block ends (bounded start and stop)."""
    sock = listen("127.0.0.1", 0)
    app = create_app(run, limits, api_key)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield Running(url_of(sock), run, app)
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            server.force_exit = True
            thread.join(STOP_TIMEOUT_S)
        sock.close()
