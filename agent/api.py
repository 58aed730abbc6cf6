"""The agent's Python API: `Agent.run` (one result) and `Agent.stream` (events, then the result).

One `Agent` serves many questions, from many threads at once: it holds the page index, the model
clients (with one shared concurrency limit) and, once a conversation thread is used, the checkpointer.
Questions and images are never logged unless `agent_log_content` is on.

Per-run options go with the run, never into a new `Agent` (which would bring its own model clients
and escape the shared concurrency limit): `top_k` (pages kept per sub-query) and `max_turns`
(search rounds). A caller that must bound a run (an HTTP request's time limit, a client that went
away) passes a `StopSignal` and/or `time_limit_s`: the run then raises `AgentStopped` at its next step, and no model
call starts after the stop or runs past the limit. An `Observer` hears of every model call and search
(metrics).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import TypeAdapter, ValidationError

from agent.errors import AgentConfigError, AgentInputError
from agent.graph import build_graph
from agent.images import ImageInput, load_user_image
from agent.nodes import RunContext
from agent.prompts import LETTERS
from agent.settings import AgentSettings
from agent.state import AgentResult, ResultEvent, SearchEvent, StreamEvent, fresh_state
from agent.threads import Threads, open_threads
from agent.vlm import ChatModel, Endpoint, ModelCall
from rag.page_index import PageIndex

log = logging.getLogger(__name__)
MAX_THREAD_ID_CHARS = 200


class AgentStopped(RuntimeError):
    """A run ended early by its caller's `StopSignal` or `time_limit_s`, before it had a result."""


class StopSignal:
    """Stops runs from another thread: each run stops before its next graph step, and no model call
    starts after `stop()` (one already in flight ends by its own timeout, which `time_limit_s` bounds)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._contexts: list[RunContext] = []
        self.reason = ""

    @property
    def stopped(self) -> bool:
        return self._event.is_set()

    def stop(self, reason: str = "stopped by the caller") -> None:
        with self._lock:
            if not self._event.is_set():
                self.reason = reason
                self._event.set()
            for context in self._contexts:
                context.deadline = float("-inf")  # model calls check it before they start

    def _attach(self, context: RunContext) -> None:
        with self._lock:
            self._contexts.append(context)
            if self._event.is_set():
                context.deadline = float("-inf")


@dataclass
class Observer:
    """Callbacks for metrics, called from the agent's worker threads: they must be quick and thread-safe."""

    on_model_call: Callable[[ModelCall], None] | None = None  # every HTTP call to a model
    on_search: Callable[[SearchEvent], None] | None = None  # every search of a run (with its `seconds`)


class Agent:
    def __init__(self, settings: AgentSettings, index: PageIndex | None = None, observer: Observer | None = None) -> None:
        self.settings = settings
        self.index = index or PageIndex(settings)
        self._owns_index = index is None
        self.observer = observer or Observer()
        self.router, self.answerer = _chat_models(settings, self.observer.on_model_call)
        self._graph = build_graph()
        self._threads: Threads | None = None
        self._threaded_graph = None
        self._lock = threading.Lock()

    @property
    def evidence_only(self) -> bool:
        """True when no model is configured: answers are ranked evidence pages."""
        return self.answerer is None

    def run(
        self,
        question: str,
        images: Sequence[ImageInput] = (),
        choices: Sequence[str] = (),
        thread_id: str | None = None,
        books: Sequence[str] = (),
        organ_systems: Sequence[str] = (),
        *,
        top_k: int | None = None,
        max_turns: int | None = None,
        stop: StopSignal | None = None,
        time_limit_s: float | None = None,
    ) -> AgentResult:
        """Answer one question. Raises `AgentInputError` for unusable input; model faults end in warnings.

        `top_k` / `max_turns` override the settings for this run; `stop` / `time_limit_s` end it early
        with `AgentStopped` (see the module's docstring).
        """
        events = self.stream(
            question, images, choices, thread_id, books, organ_systems,
            top_k=top_k, max_turns=max_turns, stop=stop, time_limit_s=time_limit_s,
        )  # fmt: skip
        for event in events:
            if isinstance(event, ResultEvent):
                return event.result
        raise RuntimeError("the agent graph ended without a result")  # a bug, not a user error

    def stream(
        self,
        question: str,
        images: Sequence[ImageInput] = (),
        choices: Sequence[str] = (),
        thread_id: str | None = None,
        books: Sequence[str] = (),
        organ_systems: Sequence[str] = (),
        *,
        top_k: int | None = None,
        max_turns: int | None = None,
        stop: StopSignal | None = None,
        time_limit_s: float | None = None,
    ) -> Iterator[StreamEvent]:
        """Events as the agent works (route, searches, inspections, reflections), then a `ResultEvent`.

        The input is checked before the first event, so bad input raises before anything is yielded.
        With `stop` or `time_limit_s`, the iterator raises `AgentStopped` at the first step after the
        stop or the limit; no model call starts after either, and none in flight outlasts the limit.
        """
        started = time.monotonic()
        limit = started + time_limit_s if time_limit_s is not None else float("inf")
        settings = _run_settings(self.settings, top_k=top_k, max_turns=max_turns)
        question, choices = _check_text(settings, question, choices)
        context = RunContext(
            settings=settings,
            index=self.index,
            router=self.router,
            answerer=self.answerer,
            images=self._load_images(images),
            books=self._check_books(books),
            organ_systems=[name for name in organ_systems if name],
            deadline=min(started + settings.agent_max_seconds, limit),
        )
        if stop is not None:
            stop._attach(context)
        graph, config = self._graph, {"recursion_limit": 4 * settings.agent_max_turns + 10}
        if thread_id is not None:
            if not thread_id or len(thread_id) > MAX_THREAD_ID_CHARS:
                raise AgentInputError(f"a thread id has 1 to {MAX_THREAD_ID_CHARS} characters")
            graph = self._thread_graph()
            config["configurable"] = {"thread_id": thread_id}
        log.debug("question: %d chars, %d images, %d choices", len(question), len(context.images), len(choices))
        if settings.agent_log_content:
            log.info("question: %s", question)
        inputs = fresh_state(question, choices, self.answerer is not None)
        return self._events(graph, config, inputs, context, started, thread_id, stop, limit)

    def _events(self, graph, config, inputs, context, started, thread_id, stop, limit) -> Iterator[StreamEvent]:
        final: dict = {}
        on_search = self.observer.on_search
        steps = graph.stream(inputs, config, context=context, stream_mode=["custom", "values"])
        try:
            for mode, chunk in steps:
                if mode == "custom":
                    if on_search is not None and isinstance(chunk, SearchEvent):
                        _notify(on_search, chunk)
                    yield chunk
                else:
                    final = chunk
                if stop is not None and stop.stopped:
                    raise AgentStopped(stop.reason)
                if time.monotonic() > limit:
                    raise AgentStopped(f"the run's time limit ({limit - started:g} s) was reached")
        finally:
            steps.close()  # ends the graph at once when the run stops early (or its consumer goes away)
        result = AgentResult.model_validate(
            final["result"] | {"trace": final["trace"], "warnings": final["warnings"], "usage": final["usage"]}
        )
        result.latency_ms = round((time.monotonic() - started) * 1000)
        result.thread_id = thread_id
        log.debug("answered in %d ms, evidence_only=%s", result.latency_ms, result.evidence_only)
        yield ResultEvent(result=result)

    def close(self) -> None:
        for model in {self.router, self.answerer} - {None}:
            model.close()
        if self._threads is not None:
            self._threads.close()
            self._threads = None
        if self._owns_index:
            self.index.close()

    def _thread_graph(self):
        with self._lock:
            if self._threaded_graph is None:
                self._threads = open_threads(self.settings)
                self._threaded_graph = build_graph(self._threads.saver)
            return self._threaded_graph

    def _load_images(self, images: Sequence[ImageInput]) -> list:
        limit = self.settings.agent_max_images
        if len(images) > limit:
            raise AgentInputError(f"{len(images)} images given; at most {limit} are accepted (agent_max_images)")
        return [
            load_user_image(
                image,
                self.settings.agent_max_image_bytes,
                self.settings.agent_max_image_decoded_pixels,
                name=f"image {number}",
            )
            for number, image in enumerate(images, start=1)
        ]

    def _check_books(self, books: Sequence[str]) -> list[str]:
        books = [book for book in books if book]
        if books:
            known = {book.book_id for book in self.index.books()}
            unknown = sorted(set(books) - known)
            if unknown:
                raise AgentInputError(f"unknown book id(s): {', '.join(unknown)}")
        return books


# per-run option -> the setting it overrides for that run
_RUN_OPTIONS = {"top_k": "agent_pages_per_query", "max_turns": "agent_max_turns"}


def _run_settings(settings: AgentSettings, **options: int | None) -> AgentSettings:
    """The settings of one run: its `options` (None = the setting's own value), checked against the
    bounds the settings declare."""
    update = {}
    for option, value in options.items():
        if value is None:
            continue
        name = _RUN_OPTIONS[option]
        try:
            update[name] = _setting_validator(name).validate_python(value)
        except ValidationError as error:
            raise AgentInputError(f"{option}: {error.errors()[0]['msg']}") from None
    return settings.model_copy(update=update) if update else settings


@functools.cache
def _setting_validator(name: str) -> TypeAdapter:
    """A validator of one setting's type and bounds (built once: requests reuse it)."""
    field = AgentSettings.model_fields[name]
    return TypeAdapter(Annotated[field.annotation, *field.metadata])


def _check_text(settings: AgentSettings, question: str, choices: Sequence[str]) -> tuple[str, list[str]]:
    limit = settings.agent_max_question_chars
    question = (question or "").strip()
    if not question:
        raise AgentInputError("the question is empty")
    if len(question) > limit:
        raise AgentInputError(
            f"the question has {len(question)} characters; at most {limit} are accepted (agent_max_question_chars)"
        )
    choices = [" ".join((choice or "").split()) for choice in choices]
    if choices and not 2 <= len(choices) <= len(LETTERS):
        raise AgentInputError(f"a multiple-choice question needs 2 to {len(LETTERS)} choices, got {len(choices)}")
    if any(not choice for choice in choices):
        raise AgentInputError("a choice is empty")
    if sum(len(choice) for choice in choices) > limit:
        raise AgentInputError(f"the choices have more than {limit} characters together (agent_max_question_chars)")
    return question, choices


def _notify(callback: Callable, value) -> None:
    try:
        callback(value)
    except Exception:  # a metrics fault must not fail the question
        log.exception("an observer callback failed")


def _chat_models(
    settings: AgentSettings, on_call: Callable[[ModelCall], None] | None = None
) -> tuple[ChatModel | None, ChatModel | None]:
    """(router, answerer); both None when no model is configured (evidence-only mode)."""
    if not settings.vlm_base_url:
        if settings.router_base_url:
            raise AgentConfigError("router_base_url is set but vlm_base_url is not: the router needs an answerer")
        return None, None
    if not settings.vlm_model:
        raise AgentConfigError("vlm_base_url is set but vlm_model is empty: name the model to use")
    key = settings.vlm_api_key.get_secret_value() if settings.vlm_api_key else "EMPTY"
    answerer_endpoint = Endpoint(settings.vlm_base_url, settings.vlm_model, key)
    router_endpoint = Endpoint(
        settings.router_base_url or answerer_endpoint.base_url,
        settings.router_model or answerer_endpoint.model,
        settings.router_api_key.get_secret_value() if settings.router_api_key else answerer_endpoint.api_key,
    )
    slots = threading.BoundedSemaphore(settings.vlm_concurrency)

    def model(endpoint: Endpoint, role: str) -> ChatModel:
        return ChatModel(
            endpoint,
            timeout_s=settings.vlm_timeout_s,
            max_retries=settings.vlm_max_retries,
            temperature=settings.vlm_temperature,
            max_output_tokens=settings.agent_max_output_tokens,
            slots=slots,
            log_content=settings.agent_log_content,
            role=role,
            on_call=on_call,
        )

    # Two clients even on one endpoint, so that each call is reported under its role.
    return model(router_endpoint, "router"), model(answerer_endpoint, "answerer")
