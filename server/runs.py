"""Agent runs for requests: a question slot each, the request's time limit, and a StopSignal.

When the limit passes or the client goes away, the agent stops at its next step and starts no further
model call (it does not run on unseen). Every run goes to the one shared agent, so the model-call
limit (`vlm_concurrency`) holds across all requests; `run_args` are `Agent.run`'s keyword arguments.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING

import anyio
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from agent import ResultEvent, StreamEvent
from agent.api import AgentStopped, StopSignal
from agent.state import AgentResult
from server.errors import TIMEOUT_MESSAGE, ApiError

if TYPE_CHECKING:
    from server.dependencies import Services


class QuestionSlots:
    """Questions answered at once: beyond the limit a question is refused at once (503 + Retry-After)
    rather than queued, so an overloaded server says so instead of letting every answer slow down."""

    def __init__(self, limit: int) -> None:
        self._free = threading.BoundedSemaphore(limit)

    def take(self) -> Callable[[], None]:
        """A slot, as its release function (safe to call more than once)."""
        if not self._free.acquire(blocking=False):
            raise ApiError(
                503, "the server is answering as many questions as it allows (max_questions_in_flight); retry shortly",
                "overloaded", headers={"Retry-After": "2"},
            )
        released = threading.Event()

        def release() -> None:
            if not released.is_set():
                released.set()
                self._free.release()

        return release


def _observe_answer(services: Services, result: AgentResult, started: float) -> None:
    services.metrics.agent_seconds.labels(str(result.evidence_only).lower()).observe(time.perf_counter() - started)


def _run_in_thread(services: Services, run_args: dict, stop: StopSignal) -> AgentResult:
    services.metrics.agent_runs.inc()
    try:
        return services.agent.run(**run_args, stop=stop, time_limit_s=services.settings.request_timeout_s)
    finally:
        services.metrics.agent_runs.dec()


async def answer(services: Services, run_args: dict) -> AgentResult:
    """One answer within the request's time limit (TimeoutError -> 504 beyond it)."""
    release = services.question_slots.take()
    stop = StopSignal()
    started = time.perf_counter()
    try:
        with anyio.fail_after(services.settings.request_timeout_s + 1.0):  # the agent stops itself at the limit
            result = await anyio.to_thread.run_sync(
                partial(_run_in_thread, services, run_args, stop), abandon_on_cancel=True
            )
    except (AgentStopped, TimeoutError):
        services.metrics.agent_stopped.labels("timeout").inc()
        raise TimeoutError(TIMEOUT_MESSAGE) from None
    finally:
        stop.stop("the request ended")  # a no-op after a normal answer; stops an abandoned run
        release()
    _observe_answer(services, result, started)
    return result


async def start_stream(services: Services, run_args: dict) -> StreamedRun:
    """A streamed run, started: bad input raises here (a 4xx), before the response and its first event."""
    release = services.question_slots.take()
    stop = StopSignal()
    try:
        events = await run_in_threadpool(
            partial(services.agent.stream, **run_args, stop=stop, time_limit_s=services.settings.request_timeout_s)
        )
    except BaseException:
        release()
        raise
    return StreamedRun(services, events, stop, release)


class StreamedRun:
    """An agent run whose events are pulled from worker threads as a client reads them.

    Read it with `events()` inside try/finally and call `end()` in the finally, once."""

    def __init__(self, services: Services, events: Iterator, stop: StopSignal, release: Callable[[], None]) -> None:
        self.services, self.stop, self.release = services, stop, release
        self._events = self._counted(events)
        self.started = time.perf_counter()
        self.finished = False

    def _counted(self, events: Iterator) -> Iterator:
        self.services.metrics.agent_runs.inc()
        try:
            yield from events
        finally:
            self.services.metrics.agent_runs.dec()
            close = getattr(events, "close", None)
            if close is not None:
                close()

    async def events(self) -> AsyncIterator[StreamEvent]:
        """The events; AgentStopped (raised on) when the run reached the time limit."""
        try:
            async for event in iterate_in_threadpool(self._events):
                if isinstance(event, ResultEvent):
                    self.finished = True
                    _observe_answer(self.services, event.result, self.started)
                yield event
        except AgentStopped:
            self.finished = True
            self.services.metrics.agent_stopped.labels("timeout").inc()
            raise

    def end(self) -> None:
        """After the response: stop a run the client left, then close it off the event loop."""
        if not self.finished:
            self.finished = True
            self.services.metrics.agent_stopped.labels("disconnect").inc()
        self.stop.stop("the client went away")
        self.release()
        threading.Thread(target=self._close, name="agent-stream-close", daemon=True).start()

    def _close(self) -> None:
        while self._events.gi_running:  # a step still in flight (it ends soon: the run is stopped)
            time.sleep(0.02)
        self._events.close()
