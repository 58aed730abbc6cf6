"""The MCP server with the SDK's own client: streamable HTTP on the live server (API keys), and stdio
through `pathorag mcp` in a subprocess, over a small real index in evidence-only mode."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from PIL import Image

from indexer.jobs import BookMeta, index_pdf
from rag.page_index import PageIndex
from tests.conftest import PATHOLOGY_FIRST_LABEL, write_pathology_book
from tests.test_server import live_server, png_data_url, server_settings  # noqa: F401

pytestmark = pytest.mark.slow

HODGKIN = "Which cells are characteristic of Hodgkin lymphoma?"


def _http_client(url: str, key: str):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return Client(streamable_http_client(url + "/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=120)))


def _structured(result) -> dict:
    assert not result.is_error, result.content
    return result.structured_content


async def _exercise(client: Client) -> dict:
    """What every transport must do: list tools, search, fetch a page with its image, ask, refuse bad input."""
    seen: dict = {}
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == {"search_pages", "get_page", "ask", "list_books"}
    assert tools["search_pages"].input_schema["properties"]["top_k"]["maximum"] == 50

    books = _structured(await client.call_tool("list_books", {}))["result"]
    assert [b["title"] for b in books] == ["Essentials of Pathology"] and books[0]["page_count"] == 6
    book_id = books[0]["book_id"]

    hits = _structured(await client.call_tool("search_pages", {"query": "Reed-Sternberg cells", "top_k": 3}))["hits"]
    assert len(hits) == 3 and hits[0]["page"] == 2 and "Reed-Sternberg" in hits[0]["snippet"]
    assert hits[0]["page_label"] == str(PATHOLOGY_FIRST_LABEL + 1) and "Hodgkin" in hits[0]["section"]
    with_image = await client.call_tool("search_pages", {"query": "Reed-Sternberg", "image": png_data_url()})
    assert with_image.is_error and "needs a page encoder" in with_image.content[0].text  # a text-only index

    page = await client.call_tool("get_page", {"book_id": book_id, "page": 2, "max_pixels": 40_000})
    assert not page.is_error, page.content
    text, image = page.content
    assert "Reed-Sternberg" in text.text and f"page {PATHOLOGY_FIRST_LABEL + 1}" in text.text
    decoded = Image.open(io.BytesIO(base64.b64decode(image.data)))
    assert image.mime_type == "image/jpeg" and decoded.width * decoded.height <= 40_000
    resource = await client.read_resource(hits[0]["uri"])
    assert "Reed-Sternberg" in resource.contents[0].text

    answer = _structured(await client.call_tool("ask", {
        "question": HODGKIN, "choices": ["Reed-Sternberg cells", "Langhans giant cells", "Keratin pearls"],
    }))
    assert answer["evidence_only"] and answer["choice"] == "A"
    assert answer["citations"] and answer["citations"][0]["ref"] == "P1" and answer["citations"][0]["book_id"] == book_id
    assert "Reed-Sternberg cells are large binucleate cells" in answer["citations"][0]["passage"]

    for name, arguments, says in [
        ("search_pages", {"query": "x", "top_k": 500}, "top_k"),
        ("search_pages", {}, "query text, an image"),
        ("search_pages", {"query": "x", "books": ["no-such-book"]}, "no book matches"),
        ("search_pages", {"query": "x", "image": "not base64!"}, "base64"),
        ("get_page", {"book_id": book_id, "page": 99}, "no page 99"),
        ("ask", {"question": "x" * 5000}, "question"),
        ("ask", {"question": HODGKIN, "images": [png_data_url()] * 9}, "at most"),
    ]:
        refused = await client.call_tool(name, arguments)
        assert refused.is_error and says in refused.content[0].text, (name, arguments, refused.content)
    seen["book_id"] = book_id
    return seen


def test_streamable_http_on_the_server_needs_a_key(live_server):  # noqa: F811
    async def run() -> None:
        async with _http_client(live_server.url, "user-key") as client:
            await _exercise(client)
            # the server still answers after the refusals
            assert (await client.call_tool("list_books", {})).is_error is False

    anyio.run(run)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        reply = httpx.post(live_server.url + "/mcp", headers=headers | {"Accept": "application/json, text/event-stream"},
                           json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert reply.status_code == 401 and reply.json()["error"]["message"], reply.text
        assert reply.headers["www-authenticate"] == "Bearer"

    async def with_key(key: str) -> None:
        async with _http_client(live_server.url, key) as client:
            await client.list_tools()

    for key in ("", "wrong"):  # the SDK's client, refused before any tool is listed
        with pytest.raises(BaseExceptionGroup) as refused:
            anyio.run(with_key, key)
        assert refused.group_contains(MCPError, match="error response")


def test_image_search_on_a_visual_index_in_process(tmp_path, visual_encoders, tiny_colqwen2_path):
    from server.mcp_tools import build_mcp_server

    settings = server_settings(tmp_path / "data", page_encoder=str(tiny_colqwen2_path))
    index = PageIndex(settings, encoders=visual_encoders)
    try:
        assert index_pdf(index, write_pathology_book(tmp_path / "essentials.pdf")).ok

        async def no_answers(run_args: dict):
            raise AssertionError("not asked")

        async def run() -> None:
            async with Client(build_mcp_server(settings, index, no_answers)) as client:
                plain_base64 = png_data_url().split(",", 1)[1]  # as models often write it
                found = _structured(await client.call_tool("search_pages", {"image": plain_base64, "top_k": 6}))
                assert sorted(hit["page"] for hit in found["hits"]) == [1, 2, 3, 4, 5, 6]

        anyio.run(run)
    finally:
        index.close()


def test_stdio_server_through_pathorag_mcp(tmp_path, text_only_encoders):
    data_dir = tmp_path / "data"
    index = PageIndex(server_settings(data_dir), encoders=text_only_encoders)
    assert index_pdf(index, write_pathology_book(tmp_path / "essentials.pdf"), BookMeta(organ_systems=["general"])).ok
    env = {key: value for key, value in os.environ.items() if key.startswith(("PATH", "HOME", "HF_", "TRANSFORMERS"))}
    env |= {"PATHORAG_DATA_DIR": str(data_dir), "PATHORAG_PAGE_ENCODER": "none", "PATHORAG_OCR": "false",
            "PATHORAG_RENDER_DPI": "72", "PATHORAG_AGENT_MAX_IMAGE_DECODED_PIXELS": "4000000"}
    command = str(Path(sys.executable).parent / "pathorag")
    held = subprocess.run([command, "mcp"], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert held.returncode == 2 and "open in another process" in " ".join(held.stderr.split()) and held.stdout == ""
    index.close()  # the stdio server opens it in its own process
    params = StdioServerParameters(command=command, args=["mcp"], env=env, cwd=tmp_path)

    async def run() -> None:
        async with Client(params, read_timeout_seconds=300) as client:
            await _exercise(client)
            listing = json.loads((await client.read_resource("pathorag://books")).contents[0].text)
            assert listing[0]["title"] == "Essentials of Pathology"

    anyio.run(run)
