"""The MCP tools over streamable HTTP at /mcp on the FastAPI app, behind the same API keys as the REST API.

Questions asked through `ask` take the server's question slots and time limit like /v1/ask does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from starlette.datastructures import Headers
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from server.auth import AuthError, KeyChecker
from server.dependencies import Services
from server.errors import error_response
from server.mcp_tools import build_mcp_server
from server.runs import answer

MCP_PATH = "/mcp"


class _RequireApiKey:
    """Refuses a request without a valid API key (401, as the REST API) before the MCP transport sees it."""

    def __init__(self, app: ASGIApp, keys: KeyChecker) -> None:
        self.app, self.keys = app, keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self.keys.check(Headers(scope=scope).get("authorization"))
        except AuthError as error:
            response = error_response(error.status, error.message, "authentication_error", {"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class McpEndpoint:
    """The /mcp route and the session manager the app's lifespan runs."""

    def __init__(self, services: Services) -> None:
        settings = services.settings
        server = build_mcp_server(settings, services.index, partial(answer, services))
        # Builds the session manager; on a loopback address the SDK also refuses other Host headers
        # (DNS rebinding protection).
        server.streamable_http_app(streamable_http_path=MCP_PATH, host=settings.server_host)
        self._sessions = server.session_manager
        self.route = Route(MCP_PATH, endpoint=_RequireApiKey(StreamableHTTPASGIApp(self._sessions), services.keys))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self._sessions.run():
            yield
