"""Errors -> HTTP responses, all in one place: every error body is `{"error": {"message", "type"}}`.

Routes raise `ApiError` for their own refusals; errors from the agent, the auth check, the index, the
page encoder and the time limit are mapped here by their type (never by the text of their message).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.errors import AgentInputError
from agent.images import ImageTooLargeError
from rag.encoders.served import EncoderServiceError
from rag.page_index import NotInIndexError
from rag.store import StoreError
from server.auth import AuthError
from server.protocol import ErrorBody, ErrorResponse

log = logging.getLogger(__name__)

TIMEOUT_MESSAGE = "the question took longer than the server's time limit (request_timeout_s)"

# The error statuses a route may answer with, for its OpenAPI `responses`.
ERROR_RESPONSES = {status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 408, 413, 422)}


class ApiError(Exception):
    """A refusal with its status, error type and any headers (Retry-After, ...)."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.headers = status, message, type_, headers or {}


def error_body(message: str, type_: str) -> ErrorResponse:
    return ErrorResponse(error=ErrorBody(message=message, type=type_))


def error_response(status: int, message: str, type_: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, type_).model_dump(), status_code=status, headers=headers)


async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return error_response(error.status, error.message, error.type, error.headers)


async def _auth_error(request: Request, error: AuthError) -> JSONResponse:
    if error.status == 401:
        return error_response(401, error.message, "authentication_error", {"WWW-Authenticate": "Bearer"})
    return error_response(error.status, error.message, "permission_error")


async def _input_error(request: Request, error: AgentInputError) -> JSONResponse:
    if isinstance(error, ImageTooLargeError):  # too many bytes or pixels
        return error_response(413, str(error), "request_too_large")
    return error_response(422, str(error), "invalid_request_error")


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        parts.append(f"{where}: {item.get('msg', 'invalid')}" if where else str(item.get("msg", "invalid")))
    return error_response(422, "; ".join(parts) or "invalid request", "invalid_request_error")


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    message = error.detail if isinstance(error.detail, str) else "request failed"
    return error_response(error.status_code, message, "not_found" if error.status_code == 404 else "invalid_request_error")


async def _not_in_index(request: Request, error: NotInIndexError) -> JSONResponse:
    return error_response(404, str(error), "not_found")


async def _encoder_unavailable(request: Request, error: EncoderServiceError) -> JSONResponse:
    log.warning("page encoder failed on %s %s: %s", request.method, request.url.path, error)
    return error_response(503, str(error), "service_unavailable")


async def _store_unavailable(request: Request, error: StoreError) -> JSONResponse:
    log.error("the index failed on %s %s: %s", request.method, request.url.path, error)
    return error_response(503, str(error), "service_unavailable")


async def _timeout(request: Request, error: TimeoutError) -> JSONResponse:
    return error_response(504, TIMEOUT_MESSAGE, "timeout")


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    log.error("internal error on %s %s: %s", request.method, request.url.path, type(error).__name__, exc_info=error)
    return error_response(500, "internal server error", "server_error")


_HANDLERS = (  # the handler of an error's nearest type in this table answers it
    (ApiError, _api_error),
    (AuthError, _auth_error),
    (AgentInputError, _input_error),
    (RequestValidationError, _validation_error),
    (StarletteHTTPException, _http_error),
    (NotInIndexError, _not_in_index),  # no such book or page
    (EncoderServiceError, _encoder_unavailable),  # the served page encoder is down: 503, clients retry
    (StoreError, _store_unavailable),  # the index cannot be opened or used (e.g. its disk is full)
    (TimeoutError, _timeout),
    (Exception, _internal_error),
)


def install_error_handlers(app: FastAPI) -> None:
    for error_type, handler in _HANDLERS:
        app.add_exception_handler(error_type, handler)
