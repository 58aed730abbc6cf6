"""The FastAPI app: a thin HTTP layer over the agent (questions) and the indexer (books).

`create_app(settings)` builds everything from the one ServerSettings object and includes one router per
API (server/routers/) and the MCP endpoint (/mcp); the routes only translate requests -> agent/indexer
calls (CPU-bound work in worker threads) and results -> protocol models. Questions and images are
never logged.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

import rag  # noqa: F401  (torch/torchvision compatibility before any model library is imported)
from rag.page_index import PageIndex
from server.dependencies import Services
from server.errors import install_error_handlers
from server.limits import BodyLimitMiddleware
from server.mcp_http import McpEndpoint
from server.routers import ask, books, health, openai, pages, web
from server.settings import ServerSettings


def create_app(settings: ServerSettings | None = None, index: PageIndex | None = None) -> FastAPI:
    """The app; `index` lets a caller share an already open page index (tests, embedding)."""
    settings = settings or ServerSettings()
    services = Services(settings, index)
    mcp = McpEndpoint(services)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services.start()
        try:
            async with mcp.running():
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
    install_error_handlers(app)
    _install_middleware(app, services)
    for api in (health, ask, pages, books, openai, web):
        app.include_router(api.router)
    app.router.routes.append(mcp.route)  # the MCP tools over streamable HTTP (server/mcp_http.py)
    return app


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
        upload_paths=(books.BOOKS_PATH,),
        stall_timeout_s=settings.request_body_timeout_s,
    )
