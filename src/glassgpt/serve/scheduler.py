"""The one place the model runs: a worker thread, a bounded queue of jobs, events back to asyncio.

A model (and the look views' forward hooks) must not be used by two requests at once, so every
request that touches it becomes a `Job` run by a single worker thread, one after another; while
one runs, the event loop keeps serving (streams, health, the page). The queue is bounded: a job
that finds it full is refused (`Busy`, HTTP 429) instead of piling up memory. A job streams
events back to its request's event loop; its request cancels it when the client goes away, and
the job's own work checks `cancelled` after each token (a queued job that was cancelled never
starts).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from glassgpt.errors import GlassError

log = logging.getLogger("glassgpt.serve")


class Busy(Exception):
    """The queue is full: the request is refused now (the client may retry later)."""


@dataclass(frozen=True)
class Done:
    """The last event of a job that finished: what its work returned."""

    result: Any


@dataclass(frozen=True)
class Failed:
    """The last event of a job whose work raised."""

    error: BaseException


class Job:
    """One unit of model work: `work(job)` runs on the worker thread and may `emit` events."""

    def __init__(self, work: Callable[[Job], Any], loop: asyncio.AbstractEventLoop) -> None:
        self.work = work
        self.loop = loop
        self.cancelled = threading.Event()
        self._events: asyncio.Queue[Any] = asyncio.Queue()

    def emit(self, event: Any) -> None:
        """Hand an event to the request's event loop (called from the worker thread)."""
        try:
            self.loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the loop is closed: the server is stopping, nobody listens
            self.cancelled.set()

    def cancel(self) -> None:
        self.cancelled.set()

    async def events(self) -> AsyncIterator[Any]:
        """Every event up to and including the last one (`Done` or `Failed`)."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, (Done, Failed)):
                return

    async def result(self) -> Any:
        """What the work returned (its other events are dropped); its exception if it raised."""
        async for event in self.events():
            if isinstance(event, Failed):
                raise event.error
            if isinstance(event, Done):
                return event.result
        raise RuntimeError("a job ended without a result")  # pragma: no cover


@dataclass
class SchedulerStats:
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    rejected: int = 0  # refused with 429
    tokens_generated: int = 0  # counted by the generation work, cancelled jobs included


class Scheduler:
    """A worker thread running jobs one at a time from a queue of at most `max_queue` waiting."""

    def __init__(self, max_queue: int) -> None:
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self.max_queue = max_queue
        self.stats = SchedulerStats()
        self.running: Job | None = None
        self._lock = threading.Lock()  # guards stats, written by the worker and read by requests
        self._thread = threading.Thread(target=self._work, name="glassgpt-model", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Job:
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            with self._lock:
                self.stats.rejected += 1
            raise Busy(f"the server is busy: {self.max_queue} requests are already waiting for the "
                       "model; retry in a moment (or start the server with a larger --max-queue)") from None
        return job

    def count_tokens(self, count: int) -> None:
        with self._lock:
            self.stats.tokens_generated += count

    def snapshot(self) -> dict[str, int | bool]:
        with self._lock:
            return {"queued": self._queue.qsize(), "running": self.running is not None,
                    "max_queue": self.max_queue, **vars(self.stats)}

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what waits, let the running job see its cancel flag, stop the worker."""
        if self.running is not None:
            self.running.cancel()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.cancel()
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            if job.cancelled.is_set():  # its client left while it waited
                with self._lock:
                    self.stats.cancelled += 1
                job.emit(Failed(asyncio.CancelledError()))
                continue
            self.running = job
            try:
                result = job.work(job)
            except Exception as err:  # reported to the request; the worker keeps serving
                with self._lock:
                    self.stats.failed += 1
                if not isinstance(err, GlassError):
                    log.exception("a job failed")
                job.emit(Failed(err))
            else:
                with self._lock:
                    if job.cancelled.is_set():
                        self.stats.cancelled += 1
                    else:
                        self.stats.completed += 1
                job.emit(Done(result))
            finally:
                self.running = None
