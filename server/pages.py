"""What /v1/pages accepts (book ids, the size of image wanted, boxes to highlight) and the
highlighted page image it then serves."""

from __future__ import annotations

import io
import re

from PIL import Image, ImageDraw

from rag.page_images import encode_webp
from rag.models import Box
from server.errors import ApiError

BOOK_ID = re.compile(r"[0-9a-f]{8,64}")
_THUMB_SIDE = 256
MAX_HIGHLIGHT_BOXES = 40
_PER_MILLE = 1000  # highlight boxes travel in URLs as integers in 1/1000 of the page's sides
_FILL = (255, 214, 0, 90)  # translucent yellow, a highlighter's
_EDGE = (230, 120, 0, 255)


def max_side(size: str) -> int | None:
    """`size` ('full', 'thumb' or a number of pixels) -> the largest side wanted; None for the stored image."""
    if size == "full":
        return None
    if size == "thumb":
        return _THUMB_SIDE
    if size.isdigit() and 16 <= int(size) <= 4096:
        return int(size)
    raise ApiError(400, "size must be 'full', 'thumb' or a number from 16 to 4096")


def format_highlight(boxes: list[Box]) -> str:
    """Boxes (fractions of the page) as the `highlight` parameter: left,top,right,bottom per box, per mille."""
    return ",".join(str(round(v * _PER_MILLE)) for box in boxes[:MAX_HIGHLIGHT_BOXES] for v in box)


def parse_highlight(text: str) -> list[Box]:
    """The `highlight` parameter -> boxes as fractions of the page; ApiError 400 when malformed."""
    values = text.split(",")
    if not all(v.isdigit() and int(v) <= _PER_MILLE for v in values) or len(values) % 4:
        raise ApiError(400, "highlight must be groups of four integers 0..1000 (left,top,right,bottom per mille)")
    if len(values) > 4 * MAX_HIGHLIGHT_BOXES:
        raise ApiError(400, f"highlight takes at most {MAX_HIGHLIGHT_BOXES} boxes")
    numbers = [int(v) / _PER_MILLE for v in values]
    return [tuple(numbers[i : i + 4]) for i in range(0, len(numbers), 4)]


def highlighted(webp: bytes, boxes: list[Box]) -> bytes:
    """The page image with the boxes marked as with a highlighter (a little larger than the words)."""
    image = Image.open(io.BytesIO(webp)).convert("RGB")
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    width, height = image.size
    pad = max(1, round(height / 400))
    for left, top, right, bottom in boxes:
        if right > left and bottom > top:
            rect = (left * width - pad, top * height - pad, right * width + pad, bottom * height + pad)
            draw.rectangle(rect, fill=_FILL, outline=_EDGE, width=pad)
    return encode_webp(Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB"))
