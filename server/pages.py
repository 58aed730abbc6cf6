"""Page images from the index for /v1/pages: the stored WebP, or a thumbnail no larger than a given side."""

from __future__ import annotations

import re

from rag.page_index import PageIndex, page_point_id
from server.errors import ApiError

BOOK_ID = re.compile(r"[0-9a-f]{8,64}")
_THUMB_SIDE = 256


def max_side(size: str) -> int | None:
    """`size` ('full', 'thumb' or a number of pixels) -> the largest side wanted; None for the stored image."""
    if size == "full":
        return None
    if size == "thumb":
        return _THUMB_SIDE
    if size.isdigit() and 16 <= int(size) <= 4096:
        return int(size)
    raise ApiError(400, "size must be 'full', 'thumb' or a number from 16 to 4096")


def page_bytes(index: PageIndex, book_id: str, page: int, side: int | None) -> bytes:
    """The image of one page of a complete book (404 for anything missing); blocks, so run it in a thread."""
    book = index.store.get_book(book_id)
    if book is None or not book.complete:
        raise ApiError(404, "no such book", "not_found")
    point = page_point_id(book_id, page)
    record = index.store.get_pages([point]).get(point)
    if record is None or not record.image_key:
        raise ApiError(404, "no such page", "not_found")
    try:
        if side is None:
            return index.images.path(record.image_key).read_bytes()
        return index.images.thumbnail(record.image_key, side)
    except (KeyError, FileNotFoundError, ValueError):
        raise ApiError(404, "no image for this page", "not_found") from None
