"""Request body limits as a pure ASGI middleware: refuse by Content-Length, count streamed bodies, and
answer 408 to a body that stops arriving (a stalled or never-ending upload holds no worker forever)."""

from __future__ import annotations

import json

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import error_body


class BodyLimitMiddleware:
    """413 for bodies over `default_limit` bytes (`upload_limit` for paths in `upload_paths`); 408 when
    `stall_timeout_s` pass between two pieces of a body not yet complete.

    The refusal is sent from here, before the app answers; the app then reads a disconnect and its own
    answer is dropped (an error raised into the app would become the form parser's 400)."""

    def __init__(
        self, app: ASGIApp, default_limit: int, upload_limit: int, upload_paths: tuple[str, ...], stall_timeout_s: float
    ) -> None:
        self.app = app
        self.default_limit = default_limit
        self.upload_limit = upload_limit
        self.upload_paths = upload_paths
        self.stall_timeout_s = stall_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope["path"].rstrip("/") in self.upload_paths else self.default_limit
        too_large = (413, f"request body larger than {limit} bytes", "request_too_large")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await _refuse(send, *too_large)
                    return
        received = 0
        started = refused = body_done = False

        async def refuse(status: int, message: str, type_: str) -> Message:
            nonlocal refused
            if not started and not refused:
                await _refuse(send, status, message, type_)
            refused = True
            return {"type": "http.disconnect"}

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if refused:
                return {"type": "http.disconnect"}
            if body_done:  # after the body, receive() only waits for the client to go away: no time limit
                return await receive()
            try:
                with anyio.fail_after(self.stall_timeout_s):
                    message = await receive()
            except TimeoutError:
                stalled = f"no part of the request body arrived for {self.stall_timeout_s:g} s (request_body_timeout_s)"
                return await refuse(408, stalled, "timeout")
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > limit:
                    return await refuse(*too_large)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the app's own answer to a body it could not read
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, tracking_send)


async def _refuse(send: Send, status: int, message: str, type_: str) -> None:
    body = json.dumps(error_body(message, type_).model_dump()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
