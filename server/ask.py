"""Serving /v1/ask: the question from a JSON body or a multipart form, and its answer as one response
or as server-sent events (the agent's progress, then the result)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from agent import ResultEvent
from agent.api import AgentStopped
from agent.errors import AgentInputError
from agent.images import ImageTooLargeError
from server.errors import TIMEOUT_MESSAGE, ApiError, error_body
from server.images import check_image_count, images_bytes
from server.page_links import PageLinker
from server.protocol import AskRequest, event_json
from server.results import ask_response
from server.runs import StreamedRun
from server.settings import ServerSettings

log = logging.getLogger(__name__)

_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")

# /v1/ask reads its body itself (JSON or a form), so its OpenAPI request body is declared here.
ASK_OPENAPI = {
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


@dataclass
class Question:
    """One question ready for the agent: the request's fields and its images as bytes."""

    request: AskRequest
    images: list[bytes]

    def run_args(self) -> dict:
        """`Agent.run`'s keyword arguments."""
        ask = self.request
        return dict(
            question=ask.question, images=self.images, choices=ask.choices, thread_id=ask.thread_id,
            books=ask.books, organ_systems=ask.organ_systems, top_k=ask.top_k, max_turns=ask.max_turns,
        )  # fmt: skip


def _validated(fields: object) -> AskRequest:
    try:
        return AskRequest.model_validate(fields)
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None


async def read_question(request: Request, settings: ServerSettings) -> Question:
    if request.headers.get("content-type", "").startswith(_FORM_TYPES):
        return await _form_question(request, settings)
    try:
        payload = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body must be JSON (application/json) or a multipart form") from None
    ask = _validated(payload)
    return Question(ask, await images_bytes(ask.images, settings))


async def _form_question(request: Request, settings: ServerSettings) -> Question:
    form = await request.form(max_files=settings.agent_max_images + 1, max_fields=200)
    fields: dict = {"question": form.get("question") or ""}
    for name in ("choices", "books", "organ_systems"):
        fields[name] = [str(v) for v in form.getlist(name) if isinstance(v, str)]
    for name in ("top_k", "max_turns", "thread_id", "stream"):
        value = form.get(name)
        if isinstance(value, str) and value != "":
            fields[name] = value
    ask = _validated(fields)
    uploads = [v for key in ("images", "image") for v in form.getlist(key) if not isinstance(v, str)]
    check_image_count(len(uploads), settings)
    limit = settings.agent_max_image_bytes
    images = []
    for number, upload in enumerate(uploads, start=1):
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise ImageTooLargeError(f"image {number}: file larger than {limit} bytes")
        images.append(data)
    return Question(ask, images)


def _error_event(message: str, type_: str) -> dict:
    return {"event": "error", "data": event_json(error_body(message, type_))}


async def ask_events(run: StreamedRun, link: PageLinker):
    """The run's events as SSE, the result last; a failure after the 200 ends the stream with an error event."""
    try:
        async for event in run.events():
            if isinstance(event, ResultEvent):
                yield {"event": "result", "data": ask_response(event.result, link).model_dump_json()}
            else:
                yield {"event": event.type, "data": event.model_dump_json()}
    except AgentStopped:
        yield _error_event(TIMEOUT_MESSAGE, "timeout")
    except AgentInputError as error:
        yield _error_event(str(error), "invalid_request_error")
    except Exception as error:
        log.error("ask stream failed: %s", type(error).__name__, exc_info=error)
        yield _error_event("internal server error", "server_error")
    finally:
        run.end()
