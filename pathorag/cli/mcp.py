"""`pathorag mcp`: the MCP tools over stdio, for desktop agent clients (Claude Desktop, Cursor, VS Code)."""

from __future__ import annotations

from functools import partial

from pathorag.cli.common import load_settings, user_errors


def mcp() -> None:
    """Serve search_pages, get_page, ask and list_books to an MCP client over stdin/stdout."""
    import anyio

    from agent import Agent
    from rag.page_index import PageIndex
    from server.mcp_tools import build_mcp_server
    from server.settings import ServerSettings

    settings = load_settings(ServerSettings)  # also sends logging to stderr: stdout carries the protocol
    with user_errors():
        index = PageIndex(settings)
        index.books()  # open it now: an index held by `pathorag serve` is refused with its reason
    agent = Agent(settings, index)

    async def answer(run_args: dict):
        run = partial(agent.run, **run_args, time_limit_s=settings.request_timeout_s)
        return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)

    try:
        anyio.run(build_mcp_server(settings, index, answer).run_stdio_async)
    finally:
        agent.close()
        index.close()
