"""The FastAPI app: a thin HTTP layer over the agent (questions) and the indexer (books).

`create_app(settings)` builds everything from the one Settings object. The routes only translate:
requests -> agent/indexer calls (CPU-bound work in worker threads), results -> protocol models.
Questions and images are never logged.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated

import anyio
import httpx
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import rag  # noqa: F401  (torch/torchvision compatibility before any model library is imported)
from agent import Agent, AgentInputError, ResultEvent
from agent.api import AgentStopped, StopSignal
from agent.state import AgentResult, AnswerTokenEvent
from indexer.jobs import remove_book
from rag.encoders.served import EncoderServiceError
from rag.page_index import PageIndex, page_point_id
from rag.settings import Settings
from server.auth import AuthError, KeyChecker, Principal
from server.chat import (
    StreamedAnswer,
    answer_text,
    chat_question,
    progress_line,
    task_reply,
)
from server.images import image_bytes
from server.jobs import JobStore, JobWorker
from server.limits import BodyLimitMiddleware
from server.metrics import Metrics
from server.protocol import (
    AskRequest,
    AskResponse,
    AssistantMessage,
    BookList,
    BookOut,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    CitationOut,
    DeletedBook,
    ErrorResponse,
    Health,
    JobOut,
    ModelCard,
    ModelList,
    UsageOut,
)

log = logging.getLogger(__name__)

_BOOK_ID = re.compile(r"[0-9a-f]{8,64}")
_JOB_ID = re.compile(r"[0-9a-f]{32}")
_THUMB_SIDE = 256
_BOOKS_PATH = "/v1/books"
_ERRORS = {
    400: {"model": ErrorResponse}, 401: {"model": ErrorResponse}, 403: {"model": ErrorResponse},
    404: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.headers = status, message, type_, headers or {}


def _error(status: int, message: str, type_: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_}}, status_code=status)


def _input_error_status(error: AgentInputError) -> int:
    text = str(error)
    return 413 if ("larger than" in text or "exceeds the limit" in text or "too many pixels" in text) else 422


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


class Services:
    """What the routes share: settings, index, agent, keys, jobs, metrics."""

    def __init__(self, settings: Settings, index: PageIndex | None) -> None:
        self.settings = settings
        self.keys = KeyChecker(settings)  # refuses to start without keys unless anonymous use is allowed
        self.owns_index = index is None
        self.index = index or PageIndex(settings)
        self.metrics = Metrics()
        self.agent = Agent(settings, self.index, observer=self.metrics.observer())
        self.question_slots = QuestionSlots(settings.max_questions_in_flight)
        self.jobs = JobStore(settings.data_dir / "server" / "jobs.sqlite")
        self.worker = JobWorker(
            self.jobs, self.index,
            on_pages=self.metrics.indexed_pages.inc,
            on_finished=self._job_finished,
        )
        self.uploads_dir = settings.data_dir / "server" / "uploads"

    def _job_finished(self, status: str) -> None:
        self.metrics.jobs_finished.labels(status).inc()
        self.metrics.jobs_queued.dec()

    def close(self) -> None:
        self.worker.stop()
        self.agent.close()
        self.jobs.close()
        if self.owns_index:
            self.index.close()


def create_app(settings: Settings | None = None, index: PageIndex | None = None) -> FastAPI:
    """The app; `index` lets a caller share an already open page index (tests, embedding)."""
    settings = settings or Settings()
    services = Services(settings, index)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pending = len(services.jobs.unfinished())
        services.metrics.jobs_queued.set(pending)
        services.worker.start()
        try:
            yield
        finally:
            await run_in_threadpool(services.close)

    app = FastAPI(
        title="pathorag",
        version="0.1.0",
        description="Pathology questions answered from indexed textbooks, with page citations.",
        lifespan=lifespan,
    )
    app.state.services = services
    _install_errors(app)
    _install_middleware(app, services)
    _add_health_routes(app, services)
    _add_ask_routes(app, services)
    _add_page_routes(app, services)
    _add_book_routes(app, services)
    _add_openai_routes(app, services)
    _add_web_routes(app)
    return app


# --- errors and middleware -------------------------------------------------------------------------


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        response = _error(error.status, error.message, error.type)
        response.headers.update(error.headers)
        return response

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, error: AuthError) -> JSONResponse:
        response = _error(error.status, error.message, "authentication_error" if error.status == 401 else "permission_error")
        if error.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(AgentInputError)
    async def input_error(request: Request, error: AgentInputError) -> JSONResponse:
        status = _input_error_status(error)
        return _error(status, str(error), "request_too_large" if status == 413 else "invalid_request_error")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        parts = []
        for item in error.errors()[:5]:
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            parts.append(f"{where}: {item.get('msg', 'invalid')}" if where else str(item.get("msg", "invalid")))
        return _error(422, "; ".join(parts) or "invalid request", "invalid_request_error")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = error.detail if isinstance(error.detail, str) else "request failed"
        return _error(error.status_code, message, "not_found" if error.status_code == 404 else "invalid_request_error")

    @app.exception_handler(EncoderServiceError)
    async def encoder_unavailable(request: Request, error: EncoderServiceError) -> JSONResponse:
        log.warning("page encoder failed on %s %s: %s", request.method, request.url.path, error)
        return _error(503, str(error), "service_unavailable")

    @app.exception_handler(TimeoutError)
    async def timeout_error(request: Request, error: TimeoutError) -> JSONResponse:
        return _error(504, _TIMEOUT_MESSAGE, "timeout")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        log.error("internal error on %s %s: %s", request.method, request.url.path, type(error).__name__, exc_info=error)
        return _error(500, "internal server error", "server_error")


def _install_middleware(app: FastAPI, services: Services) -> None:
    settings, metrics = services.settings, services.metrics

    @app.middleware("http")
    async def measure(request: Request, call_next):
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            metrics.request_seconds.labels(request.method, path, str(status)).observe(time.perf_counter() - started)

    origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_methods=["*"], allow_headers=["*"],
            allow_credentials="*" not in origins,
        )
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=settings.max_request_bytes,
        upload_limit=settings.max_upload_bytes,
        upload_paths=(_BOOKS_PATH,),
    )


def _user(services: Services):
    def dependency(request: Request) -> Principal:
        return services.keys.check(request.headers.get("authorization"))

    return dependency


def _admin(services: Services):
    def dependency(request: Request) -> Principal:
        return services.keys.check(request.headers.get("authorization"), admin=True)

    return dependency


# --- health and metrics ----------------------------------------------------------------------------


def _add_health_routes(app: FastAPI, services: Services) -> None:
    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    async def readyz():
        checks: dict[str, str] = {}
        ready = True
        try:
            await run_in_threadpool(services.index.store.list_books)
            checks["store"] = "ok"
        except Exception as error:
            checks["store"] = f"unavailable ({type(error).__name__})"
            ready = False
        settings = services.settings
        if services.agent.evidence_only:
            checks["vlm"] = "evidence-only (no VLM configured)"
        else:
            key = settings.vlm_api_key.get_secret_value() if settings.vlm_api_key else "EMPTY"
            try:
                async with httpx.AsyncClient(timeout=3.0) as client:
                    reply = await client.get(settings.vlm_base_url.rstrip("/") + "/models", headers={"Authorization": f"Bearer {key}"})
                checks["vlm"] = "ok" if reply.status_code == 200 else f"HTTP {reply.status_code}"
                ready = ready and reply.status_code == 200
            except httpx.HTTPError as error:
                checks["vlm"] = f"unreachable ({type(error).__name__})"
                ready = False
        body = Health(status="ready" if ready else "not ready", checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


# --- ask -------------------------------------------------------------------------------------------


def _citations(result: AgentResult) -> list[CitationOut]:
    return [
        CitationOut(
            ref=c.ref, book_id=c.book_id, title=c.title, page=c.page, page_label=c.page_label, section=c.section,
            score=c.score, snippet=c.snippet, image_url=f"/v1/pages/{c.book_id}/{c.page}",
        )
        for c in result.citations
    ]


def _usage(result: AgentResult) -> UsageOut:
    prompt, completion = result.usage.prompt_tokens, result.usage.completion_tokens
    return UsageOut(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _ask_response(result: AgentResult) -> AskResponse:
    return AskResponse(
        answer=result.answer, choice=result.choice, rationale=result.rationale, confidence=result.confidence,
        evidence_only=result.evidence_only, insufficient_evidence=result.insufficient_evidence,
        option_support=result.option_support, citations=_citations(result), trace=result.trace,
        warnings=result.warnings, usage=_usage(result), latency_ms=result.latency_ms, thread_id=result.thread_id,
    )


_ASK_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": AskRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["question"],
                    "properties": {
                        "question": {"type": "string"},
                        "choices": {"type": "array", "items": {"type": "string"}},
                        "books": {"type": "array", "items": {"type": "string"}},
                        "organ_systems": {"type": "array", "items": {"type": "string"}},
                        "top_k": {"type": "integer", "minimum": 1, "maximum": 50},
                        "max_turns": {"type": "integer", "minimum": 1, "maximum": 10},
                        "thread_id": {"type": "string"},
                        "stream": {"type": "boolean"},
                        "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    },
                }
            },
        },
    }
}


class _Question:
    """One question ready for the agent: text, images (bytes), options, and the agent that answers it."""

    def __init__(self, request: AskRequest, images: list[bytes]) -> None:
        self.request = request
        self.images = images


async def _parse_ask(request: Request, services: Services) -> _Question:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data") or content_type.startswith("application/x-www-form-urlencoded"):
        limit = services.settings.agent_max_images
        form = await request.form(max_files=limit + 1, max_fields=200)
        fields: dict = {"question": form.get("question") or ""}
        for name in ("choices", "books", "organ_systems"):
            fields[name] = [str(v) for v in form.getlist(name) if isinstance(v, str)]
        for name in ("top_k", "max_turns", "thread_id", "stream"):
            value = form.get(name)
            if isinstance(value, str) and value != "":
                fields[name] = value
        try:
            ask = AskRequest.model_validate(fields)
        except ValidationError as error:
            raise RequestValidationError(error.errors()) from None
        uploads = [v for key in ("images", "image") for v in form.getlist(key) if not isinstance(v, str)]
        if len(uploads) > limit:
            raise AgentInputError(f"{len(uploads)} images given; at most {limit} are accepted (agent_max_images)")
        images = []
        for number, upload in enumerate(uploads, start=1):
            data = await upload.read(services.settings.agent_max_image_bytes + 1)
            if len(data) > services.settings.agent_max_image_bytes:
                raise AgentInputError(f"image {number}: file larger than {services.settings.agent_max_image_bytes} bytes")
            images.append(data)
        return _Question(ask, images)
    try:
        payload = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body must be JSON (application/json) or a multipart form") from None
    try:
        ask = AskRequest.model_validate(payload)
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None
    if len(ask.images) > services.settings.agent_max_images:
        raise AgentInputError(
            f"{len(ask.images)} images given; at most {services.settings.agent_max_images} are accepted (agent_max_images)"
        )
    images = [
        await run_in_threadpool(image_bytes, ref, services.settings, f"image {n}") for n, ref in enumerate(ask.images, start=1)
    ]
    return _Question(ask, images)


def _add_ask_routes(app: FastAPI, services: Services) -> None:
    user = Depends(_user(services))

    @app.post(
        "/v1/ask", response_model=AskResponse, tags=["ask"], openapi_extra=_ASK_OPENAPI, responses=_ERRORS,
        summary="Answer a pathology question (JSON or multipart form; stream=true for server-sent events).",
    )
    async def ask(request: Request, principal: Principal = user):
        question = await _parse_ask(request, services)
        ask = question.request
        run_args = dict(
            question=ask.question, images=question.images, choices=ask.choices, thread_id=ask.thread_id,
            books=ask.books, organ_systems=ask.organ_systems, top_k=ask.top_k, max_turns=ask.max_turns,
        )  # fmt: skip
        if ask.stream:
            run = await _start_stream(services, run_args)
            return EventSourceResponse(_ask_events(run))
        return _ask_response(await _answer(services, run_args))


# --- running the agent -----------------------------------------------------------------------------
# Every run gets the request's time limit and a StopSignal: when the limit passes or the client goes
# away, the agent stops at its next step and starts no further model call (it does not run on unseen).

_TIMEOUT_MESSAGE = "the question took longer than the server's time limit (request_timeout_s)"


def _run_in_thread(services: Services, run_args: dict, stop: StopSignal) -> AgentResult:
    services.metrics.agent_runs.inc()
    try:
        return services.agent.run(**run_args, stop=stop, time_limit_s=services.settings.request_timeout_s)
    finally:
        services.metrics.agent_runs.dec()


async def _answer(services: Services, run_args: dict) -> AgentResult:
    """One answer within the request's time limit (TimeoutError -> 504 beyond it).

    `run_args` are `Agent.run`'s arguments: every request runs on the one shared agent, so the
    model-call limit (`vlm_concurrency`) holds across all of them.
    """
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
        raise TimeoutError(_TIMEOUT_MESSAGE) from None
    finally:
        stop.stop("the request ended")  # a no-op after a normal answer; stops an abandoned run
        release()
    services.metrics.agent_seconds.labels(str(result.evidence_only).lower()).observe(time.perf_counter() - started)
    return result


class _StreamedRun:
    """An agent run whose events are pulled from worker threads as a client reads them."""

    def __init__(self, services: Services, events: Iterator, stop: StopSignal, release: Callable[[], None]) -> None:
        self.services, self.stop, self.release = services, stop, release
        self.events = self._counted(events)
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

    def result(self, result: AgentResult) -> None:
        self.finished = True
        self.services.metrics.agent_seconds.labels(str(result.evidence_only).lower()).observe(time.perf_counter() - self.started)

    def timed_out(self) -> None:
        self.finished = True
        self.services.metrics.agent_stopped.labels("timeout").inc()

    def end(self) -> None:
        """After the response: stop a run the client left, then close it off the event loop."""
        if not self.finished:
            self.finished = True
            self.services.metrics.agent_stopped.labels("disconnect").inc()
        self.stop.stop("the client went away")
        self.release()
        threading.Thread(target=self._close, name="agent-stream-close", daemon=True).start()

    def _close(self) -> None:
        while self.events.gi_running:  # a step still in flight (it ends soon: the run is stopped)
            time.sleep(0.02)
        self.events.close()


async def _start_stream(services: Services, run_args: dict) -> _StreamedRun:
    release = services.question_slots.take()
    stop = StopSignal()
    try:  # bad input raises here, before any event
        events = await run_in_threadpool(
            partial(services.agent.stream, **run_args, stop=stop, time_limit_s=services.settings.request_timeout_s)
        )
    except BaseException:
        release()
        raise
    return _StreamedRun(services, events, stop, release)


def _error_event(message: str, type_: str) -> dict:
    return {"event": "error", "data": json.dumps({"error": {"message": message, "type": type_}})}


async def _ask_events(run: _StreamedRun):
    try:
        async for event in iterate_in_threadpool(run.events):
            if isinstance(event, ResultEvent):
                run.result(event.result)
                yield {"event": "result", "data": _ask_response(event.result).model_dump_json()}
            else:
                yield {"event": event.type, "data": event.model_dump_json()}
    except AgentStopped:
        run.timed_out()
        yield _error_event(_TIMEOUT_MESSAGE, "timeout")
    except AgentInputError as error:
        yield _error_event(str(error), "invalid_request_error")
    except Exception as error:
        log.error("ask stream failed: %s", type(error).__name__, exc_info=error)
        yield _error_event("internal server error", "server_error")
    finally:
        run.end()


# --- pages -----------------------------------------------------------------------------------------


def _add_page_routes(app: FastAPI, services: Services) -> None:
    user = Depends(_user(services))

    @app.get(
        "/v1/pages/{book_id}/{page}", tags=["pages"], response_class=Response, responses=_ERRORS,
        summary="A page image (WebP); size=thumb or a maximum side in pixels (16..4096) for a smaller one.",
    )
    async def page_image(
        book_id: str,
        page: int,
        size: Annotated[str, Query(max_length=8, description="'full' (default), 'thumb', or a max side 16..4096")] = "full",
        principal: Principal = user,
    ) -> Response:
        if not _BOOK_ID.fullmatch(book_id) or not 1 <= page <= 1_000_000:
            raise ApiError(404, "no such page", "not_found")
        if size == "full":
            max_side = None
        elif size == "thumb":
            max_side = _THUMB_SIDE
        elif size.isdigit() and 16 <= int(size) <= 4096:
            max_side = int(size)
        else:
            raise ApiError(400, "size must be 'full', 'thumb' or a number from 16 to 4096")
        data = await run_in_threadpool(_page_bytes, services, book_id, page, max_side)
        return Response(data, media_type="image/webp", headers={"Cache-Control": "private, max-age=3600"})


def _page_bytes(services: Services, book_id: str, page: int, max_side: int | None) -> bytes:
    book = services.index.store.get_book(book_id)
    if book is None or book.status != "complete":
        raise ApiError(404, "no such book", "not_found")
    record = services.index.store.get_pages([page_point_id(book_id, page)]).get(page_point_id(book_id, page))
    if record is None or not record.image_key:
        raise ApiError(404, "no such page", "not_found")
    images = services.index.images
    try:
        if max_side is None:
            return images.path(record.image_key).read_bytes()
        return images.thumbnail(record.image_key, max_side)
    except (KeyError, FileNotFoundError, ValueError):
        raise ApiError(404, "no image for this page", "not_found") from None


# --- books and jobs --------------------------------------------------------------------------------


def _safe_file_name(name: str | None) -> str:
    base = Path((name or "").replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._ -]", "_", base).strip(" .")[:120]
    if not base:
        base = "upload"
    return base if base.lower().endswith(".pdf") else base + ".pdf"


def _add_book_routes(app: FastAPI, services: Services) -> None:
    user = Depends(_user(services))
    admin = Depends(_admin(services))
    settings = services.settings

    @app.post(_BOOKS_PATH, response_model=JobOut, status_code=202, tags=["books"], responses=_ERRORS,
              summary="Upload a PDF textbook (admin); indexing runs in the background, see /v1/jobs/{id}.")
    async def add_book(
        file: Annotated[UploadFile, File(description="The PDF.")],
        title: Annotated[str, Form(max_length=500)] = "",
        edition: Annotated[str, Form(max_length=200)] = "",
        license: Annotated[str, Form(max_length=200)] = "",
        organ_systems: Annotated[list[str], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
        principal: Principal = admin,
    ) -> JobOut:
        job_id = uuid.uuid4().hex
        name = _safe_file_name(file.filename)
        folder = services.uploads_dir / job_id
        target = folder / name
        await run_in_threadpool(_save_upload, file, target, settings.max_upload_bytes)
        meta = {"title": title, "edition": edition, "license": license, "organ_systems": [o for o in organ_systems if o]}
        job = services.jobs.create(name, target, json.dumps(meta), job_id=job_id)
        services.metrics.jobs_queued.inc()
        services.worker.submit(job_id)
        return job

    @app.get(_BOOKS_PATH, response_model=BookList, tags=["books"], responses=_ERRORS)
    async def list_books(principal: Principal = user) -> BookList:
        books = await run_in_threadpool(services.index.store.list_books)
        return BookList(books=[BookOut(**book.model_dump()) for book in books])

    @app.delete(_BOOKS_PATH + "/{book_id}", response_model=DeletedBook, tags=["books"], responses=_ERRORS)
    async def delete_book(book_id: str, principal: Principal = admin) -> DeletedBook:
        if not _BOOK_ID.fullmatch(book_id):
            raise ApiError(404, "no such book", "not_found")
        removed = await run_in_threadpool(remove_book, services.index, book_id)
        if not removed:
            raise ApiError(404, "no such book", "not_found")
        return DeletedBook(book_id=book_id)

    @app.get("/v1/jobs/{job_id}", response_model=JobOut, tags=["books"], responses=_ERRORS)
    async def get_job(job_id: str, principal: Principal = user) -> JobOut:
        job = services.jobs.get(job_id) if _JOB_ID.fullmatch(job_id) else None
        if job is None:
            raise ApiError(404, "no such job", "not_found")
        return job


def _save_upload(upload: UploadFile, target: Path, limit: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    try:
        with target.open("wb") as out:
            first = True
            while chunk := upload.file.read(1 << 20):
                if first and not chunk.startswith(b"%PDF-"):
                    raise ApiError(400, "the file is not a PDF")
                first = False
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"file larger than {limit} bytes", "request_too_large")
                out.write(chunk)
        if size == 0:
            raise ApiError(400, "the file is empty")
    except BaseException:
        shutil.rmtree(target.parent, ignore_errors=True)
        raise


# --- web page --------------------------------------------------------------------------------------

_STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {"app.js": "text/javascript", "app.css": "text/css"}


def _add_web_routes(app: FastAPI) -> None:
    """The single-page web UI at `/`; open without a key (its API calls carry the key)."""
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

    @app.get("/", include_in_schema=False)
    async def web_page() -> FileResponse:
        page_headers = headers | {
            "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; frame-ancestors 'none'",
            "Referrer-Policy": "no-referrer",
        }
        return FileResponse(_STATIC / "index.html", media_type="text/html; charset=utf-8", headers=page_headers)

    @app.get("/static/{name}", include_in_schema=False)
    async def web_asset(name: str) -> FileResponse:
        if name not in _STATIC_TYPES:
            raise ApiError(404, "not found", "not_found")
        return FileResponse(_STATIC / name, media_type=_STATIC_TYPES[name], headers=headers)


# --- OpenAI-compatible chat ------------------------------------------------------------------------


def _add_openai_routes(app: FastAPI, services: Services) -> None:
    user = Depends(_user(services))
    settings = services.settings
    created = int(time.time())

    @app.get("/v1/models", response_model=ModelList, tags=["openai"], responses=_ERRORS)
    async def models(principal: Principal = user) -> ModelList:
        return ModelList(data=[ModelCard(id=settings.server_model_name, created=created)])

    @app.post("/v1/chat/completions", response_model=ChatCompletion, tags=["openai"], responses=_ERRORS,
              summary="OpenAI-compatible chat completions (text and image_url parts; stream true or false).")
    async def chat_completions(body: ChatCompletionRequest, principal: Principal = user):
        completion_id = "chatcmpl-" + uuid.uuid4().hex
        model = settings.server_model_name
        asked = chat_question(body, settings.agent_max_question_chars)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        if asked.task is not None:  # a chat front-end's title/tag request: no retrieval
            text, citations, usage = task_reply(asked.task), [], UsageOut()
            if body.stream:
                return EventSourceResponse(_chat_chunks(completion_id, model, _single(text), citations, usage, include_usage))
            return _completion(completion_id, model, text, citations, usage)
        if len(asked.images) > settings.agent_max_images:
            raise AgentInputError(f"{len(asked.images)} images given; at most {settings.agent_max_images} are accepted")
        images = [await run_in_threadpool(image_bytes, ref, settings, f"image {n}") for n, ref in enumerate(asked.images, 1)]
        run_args = dict(question=asked.question, images=images)
        if body.stream:
            run = await _start_stream(services, run_args)
            return EventSourceResponse(_chat_stream(run, completion_id, model, include_usage))
        result = await _answer(services, run_args)
        citations = _citations(result)
        return _completion(completion_id, model, answer_text(result, citations), citations, _usage(result))


def _completion(completion_id: str, model: str, text: str, citations: list[CitationOut], usage: UsageOut) -> ChatCompletion:
    return ChatCompletion(
        id=completion_id, created=int(time.time()), model=model,
        choices=[ChatChoice(message=AssistantMessage(content=text))], usage=usage, citations=citations,
    )


async def _single(text: str):
    yield text


def _chunk(completion_id: str, model: str, delta: dict, finish: str | None = None, **extra) -> str:
    body = {
        "id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra,
    }
    return json.dumps(body)


async def _chat_chunks(completion_id, model, texts, citations, usage: UsageOut, include_usage: bool):
    yield {"data": _chunk(completion_id, model, {"role": "assistant", "content": ""})}
    async for text in texts:
        if text:
            yield {"data": _chunk(completion_id, model, {"content": text})}
    final = {"citations": [c.model_dump() for c in citations]} if citations else {}
    yield {"data": _chunk(completion_id, model, {}, "stop", **final)}
    if include_usage:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                "choices": [], "usage": usage.model_dump()}
        yield {"data": json.dumps(body)}
    yield {"data": "[DONE]"}


async def _chat_stream(run: _StreamedRun, completion_id: str, model: str, include_usage: bool):
    """The agent's progress as `reasoning_content` lines (shown by chat front ends as thinking, ignored by
    plain clients), the answer's tokens as `content` as the model writes them, then the rest of the answer
    text (choice, rationale, sources): the content adds up to the non-streaming reply's (see StreamedAnswer)."""
    yield {"data": _chunk(completion_id, model, {"role": "assistant", "content": ""})}
    answer = StreamedAnswer()
    result: AgentResult | None = None
    failure = ""
    try:
        async for event in iterate_in_threadpool(run.events):
            if isinstance(event, ResultEvent):
                result = event.result
                run.result(result)
            elif isinstance(event, AnswerTokenEvent):
                text = answer.token(event.text)
                if text:
                    yield {"data": _chunk(completion_id, model, {"content": text})}
            elif line := progress_line(event):
                yield {"data": _chunk(completion_id, model, {"reasoning_content": line + "\n"})}
    except AgentStopped:
        run.timed_out()
        failure = "\n(time limit reached)"
    except Exception as error:
        log.error("chat stream failed: %s", type(error).__name__, exc_info=error)
        failure = "\n(internal server error)"
    finally:
        run.end()
    citations = _citations(result) if result is not None else []
    rest = answer.rest(answer_text(result, citations)) if result is not None else failure or "(no answer)"
    for start in range(0, len(rest), 200):  # a few chunks, as clients expect a stream
        yield {"data": _chunk(completion_id, model, {"content": rest[start:start + 200]})}
    final = {"citations": [c.model_dump() for c in citations]} if citations else {}
    yield {"data": _chunk(completion_id, model, {}, "stop", **final)}
    if include_usage:
        usage = _usage(result) if result is not None else UsageOut()
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                "choices": [], "usage": usage.model_dump()}
        yield {"data": json.dumps(body)}
    yield {"data": "[DONE]"}
