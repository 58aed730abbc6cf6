"""What /v1/pages accepts: book ids, and the size of image wanted (the stored WebP or a thumbnail)."""

from __future__ import annotations

import re

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
