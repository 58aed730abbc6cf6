"""POST /v1/ask: a pathology question (JSON or multipart form), answered at once or as server-sent events."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sse_starlette.sse import EventSourceResponse

from server.ask import ASK_OPENAPI, ask_events, read_question
from server.dependencies import Linker, ServicesDep, User
from server.errors import ERROR_RESPONSES
from server.protocol import AskResponse
from server.results import ask_response
from server.runs import answer, start_stream

router = APIRouter(tags=["ask"])


@router.post(
    "/v1/ask", response_model=AskResponse, openapi_extra=ASK_OPENAPI, responses=ERROR_RESPONSES,
    summary="Answer a pathology question (JSON or multipart form; stream=true for server-sent events).",
)
async def ask(request: Request, services: ServicesDep, principal: User, link: Linker):
    question = await read_question(request, services.settings)
    if question.request.stream:
        return EventSourceResponse(ask_events(await start_stream(services, question.run_args()), link))
    return ask_response(await answer(services, question.run_args()), link)
