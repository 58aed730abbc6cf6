"""GET /v1/pages/{book_id}/{page}: the page images that citations point to."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from server.dependencies import ServicesDep, User
from server.errors import ERROR_RESPONSES, ApiError
from server.pages import BOOK_ID, max_side

router = APIRouter(tags=["pages"])


@router.get(
    "/v1/pages/{book_id}/{page}", response_class=Response, responses=ERROR_RESPONSES,
    summary="A page image (WebP); size=thumb or a maximum side in pixels (16..4096) for a smaller one.",
)
async def page_image(
    book_id: str,
    page: int,
    services: ServicesDep,
    principal: User,
    size: Annotated[str, Query(max_length=8, description="'full' (default), 'thumb', or a max side 16..4096")] = "full",
) -> Response:
    if not BOOK_ID.fullmatch(book_id) or not 1 <= page <= 1_000_000:
        raise ApiError(404, "no such page", "not_found")
    data = await run_in_threadpool(services.index.page_image, book_id, page, max_side(size))
    return Response(data, media_type="image/webp", headers={"Cache-Control": "private, max-age=3600"})
