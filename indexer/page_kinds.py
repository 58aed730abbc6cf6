"""Which pages are the book's body, and which its front matter, contents or index, from the layout alone.

A contents or index page is a column of entries, each ending in a page number at the end of its
visual row ("Abscess, 12, 45", "4. Acute inflammation .... 4"). Such pages share words with every
chapter they list, so search ranks them for many questions although they state nothing; the pages
before the contents (title, copyright, prefaces) are front matter. Search leaves all three out by
default (`rag.search`); they stay searchable when asked for.

The rules have no tuned weights, only what defines each kind:
- an index: most of the page's rows (and at least `MIN_ROWS` of them) end in a page number;
- contents: at least `MIN_ENTRIES` rows end in a page number, and those numbers rise strictly down
  the page (in body text, numbers at row ends come in no order);
- front matter: the pages before the first contents page, when one is among the first
  `FRONT_MATTER_PAGES` pages (a book without a detected contents page has none).
Years (1500-2099) at a row's end belong to classification tables and bibliographies, not to
listings, and are not counted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.models import BODY_PAGE, OUTSIDE_BODY_PAGES

FRONT, CONTENTS, INDEX = OUTSIDE_BODY_PAGES
FRONT_MATTER_PAGES = 40
MIN_ROWS = 8
MIN_ENTRIES = 5
_TRAILING_NUMBER = re.compile(r"(?:^|[\s,.;:–—-])(\d{1,4})[.,;]?$")


@dataclass(frozen=True)
class Row:
    """A piece of text and where it stands on the page (PDF points)."""

    text: str
    x0: float
    y0: float
    y1: float


def page_kind(rows: Sequence[Row]) -> str:
    """`body`, `contents` or `index` (front matter is told by position: `pages.extract_pages`)."""
    visual_rows = _visual_rows(rows)
    numbers = [number for text in visual_rows if (number := _page_number_at_end(text)) is not None]
    if len(numbers) >= MIN_ENTRIES and all(a < b for a, b in zip(numbers, numbers[1:])):
        return CONTENTS
    if len(visual_rows) >= MIN_ROWS and len(numbers) * 2 > len(visual_rows):
        return INDEX
    return BODY_PAGE


def _visual_rows(rows: Sequence[Row]) -> list[str]:
    """Texts that stand on one baseline joined left to right (a title and its page number are often
    separate text lines of the PDF)."""
    merged: list[list[Row]] = []
    for row in sorted(rows, key=lambda r: ((r.y0 + r.y1) / 2, r.x0)):
        centre = (row.y0 + row.y1) / 2
        if merged:
            last = merged[-1][-1]
            if abs(centre - (last.y0 + last.y1) / 2) <= max(1.0, (last.y1 - last.y0) / 2):
                merged[-1].append(row)
                continue
        merged.append([row])
    return [" ".join(r.text for r in sorted(group, key=lambda r: r.x0)) for group in merged if any(r.text.strip() for r in group)]


def _page_number_at_end(text: str) -> int | None:
    match = _TRAILING_NUMBER.search(text.strip())
    if match is None or 1500 <= int(match.group(1)) <= 2099:
        return None
    return int(match.group(1))
