"""GET /v1/pages/{book_id}/{page}: the page images that citations point to, by API key or signed link,
with the cited passage highlighted when asked; GET /v1/pages/{book_id}/{page}/figures/{figure}: the
crops of the page's figures, by the same key or link."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from server.dependencies import ServicesDep
from server.errors import ERROR_RESPONSES, ApiError
from server.pages import BOOK_ID, highlighted, max_side, parse_highlight

router = APIRouter(tags=["pages"])


Size = Annotated[str, Query(max_length=8, description="'full' (default), 'thumb', or a max side 16..4096")]
Expires = Annotated[str | None, Query(max_length=12, description="A signed link's expiry (Unix seconds).")]
Highlight = Annotated[str, Query(
    max_length=800, description="Boxes to mark: left,top,right,bottom per box, in 1/1000 of the page's width "
    "and height (a citation's passage; up to 40 boxes). Part of a signed link's signature.",
)]
Signature = Annotated[str | None, Query(max_length=128, description="A signed link's signature.")]


@router.get(
    "/v1/pages/{book_id}/{page}", response_class=Response, responses=ERROR_RESPONSES,
    summary="A page image (WebP); size=thumb or a maximum side in pixels (16..4096) for a smaller one. "
    "With the API key, or without it through a citation's signed link (expires + signature). "
    "highlight marks boxes on it (a citation's passage).",
)
async def page_image(
    book_id: str, page: int, request: Request, services: ServicesDep,
    size: Size = "full", expires: Expires = None, highlight: Highlight = "", signature: Signature = None,
) -> Response:
    _authorize(request, services, book_id, page, expires, highlight, signature)
    boxes = parse_highlight(highlight) if highlight else []
    data = await run_in_threadpool(services.index.page_image, book_id, page, max_side(size))
    if boxes:
        data = await run_in_threadpool(highlighted, data, boxes)
    return _webp(data)


@router.get(
    "/v1/pages/{book_id}/{page}/figures/{figure}", response_class=Response, responses=ERROR_RESPONSES,
    summary="The crop of one of a page's figures (WebP; 1-based, top to bottom, as a citation's `figures` lists "
    "them); size as for the page. With the API key, or the page's signed link parameters.",
)
async def figure_image(
    book_id: str, page: int, figure: int, request: Request, services: ServicesDep,
    size: Size = "full", expires: Expires = None, highlight: Highlight = "", signature: Signature = None,
) -> Response:
    _authorize(request, services, book_id, page, expires, highlight, signature)
    return _webp(await run_in_threadpool(services.index.figure_image, book_id, page, figure, max_side(size)))


def _authorize(request: Request, services, book_id: str, page: int, expires, highlight: str, signature) -> None:
    """The API key, or a link signed for this page; and a page that can exist."""
    if signature is not None or expires is not None:
        services.page_links.check(book_id, page, expires or "", highlight, signature or "")
    else:
        services.keys.check(request.headers.get("authorization"))
    if not BOOK_ID.fullmatch(book_id) or not 1 <= page <= 1_000_000:
        raise ApiError(404, "no such page", "not_found")


def _webp(data: bytes) -> Response:
    return Response(data, media_type="image/webp", headers={"Cache-Control": "private, max-age=3600"})
