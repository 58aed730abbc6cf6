"""The single-page web UI at `/` and its assets; open without a key (its API calls carry the key)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from server.errors import ApiError

_STATIC = Path(__file__).parent.parent / "static"
_STATIC_TYPES = {"app.js": "text/javascript", "app.css": "text/css"}
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
_PAGE_HEADERS = _HEADERS | {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def web_page() -> FileResponse:
    return FileResponse(_STATIC / "index.html", media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


@router.get("/static/{name}")
async def web_asset(name: str) -> FileResponse:
    if name not in _STATIC_TYPES:
        raise ApiError(404, "not found", "not_found")
    return FileResponse(_STATIC / name, media_type=_STATIC_TYPES[name], headers=_HEADERS)
