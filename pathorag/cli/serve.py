"""`pathorag serve`: the HTTP API."""

from __future__ import annotations

import logging
from typing import Annotated, Optional

import typer

from pathorag.cli.common import console, load_settings


def serve(
    host: Annotated[Optional[str], typer.Option(help="Address to listen on (default: PATHORAG_SERVER_HOST).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default: PATHORAG_SERVER_PORT).")] = None,
) -> None:
    """Run the HTTP API (REST, OpenAI-compatible chat, books admin) with uvicorn."""
    import uvicorn

    from rag.store import StoreError
    from server.app import create_app
    from server.auth import AuthConfigError
    from server.settings import ServerSettings

    settings = load_settings(ServerSettings)
    logging.getLogger().setLevel(logging.INFO)
    try:
        app_ = create_app(settings)
    except (AuthConfigError, StoreError) as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(2) from None
    uvicorn.run(app_, host=host or settings.server_host, port=port or settings.server_port, timeout_graceful_shutdown=30)
