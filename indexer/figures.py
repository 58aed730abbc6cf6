"""Figures on a page: pictures (image blocks) and vector drawings, each with its "Fig. N" caption.

A caption (a text block the layout reader marked as one) is paired with the nearest picture or
drawing just above or below it; a picture with no caption is kept
when it is large enough to be a figure rather than an ornament; a drawing with no caption is not (rules,
frames and tables are drawings too). Boxes come in PDF points of the unrotated page and go out as
fractions of the rendered page, like the word boxes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pymupdf

from rag.models import Box

_MIN_SIDE_PT = 12  # a sixth of an inch, and
_MIN_SIDE = 0.02  # of the page's side, and
_MIN_AREA = 0.005  # of the page's area: smaller regions are marks, bullets, initials, not figures
_UNCAPTIONED_MIN_AREA = 0.04  # a picture without a caption must be larger to count
_SCAN_AREA = 0.85  # a picture covering this much of the page is the page itself (a scan), not a figure
_CAPTION_REACH = 0.2  # of the page's height: how far a caption may sit from its figure
# "Fig. 12.", "FIG. 3a:", "Figure 4 —", "Plate IV.", "Pl. XXXVI" at the start of a caption; group 1 the number.
CAPTION_START = re.compile(r"(?:fig(?:ure)?s?|plate|pl)\.?\s*(\d+|[ivxlcdm]+\b)[a-z]?", re.IGNORECASE)


@dataclass(frozen=True)
class Figure:
    number: str  # as printed ("25", "XXXIV"); "" for a figure without a caption
    caption: str
    box: Box  # the picture or drawing, without its caption, as fractions of the rendered page


def find_figures(
    page: pymupdf.Page, picture_boxes: list[pymupdf.Rect], captions: list[tuple[str, pymupdf.Rect]]
) -> list[Figure]:
    """The page's figures, top to bottom: `picture_boxes` are where its images are shown, `captions` its
    caption blocks (text, box); drawings are clustered from the page itself."""
    area = abs(page.rect)
    # Only what is on the page counts: a PDF may place an image partly or wholly outside it. The boxes
    # are in points of the unrotated page, so they are clipped to that.
    unrotated = page.rect * page.derotation_matrix
    shown = [pymupdf.Rect(box) & unrotated for box in picture_boxes]
    pictures = [box for box in shown if _figure_sized(box, page.rect) and abs(box) < _SCAN_AREA * area]
    drawings = [pymupdf.Rect(box) & unrotated for box in page.cluster_drawings()]
    drawings = [box for box in drawings if _figure_sized(box, page.rect)]
    regions = _merged(pictures + drawings)
    figures, used, fractions = [], set(), page_fractions(page)
    for caption, index in _pairs(regions, [box for _, box in captions], page.rect.height * _CAPTION_REACH):
        text = captions[caption][0]
        used.add(index)
        number = CAPTION_START.match(text)
        figures.append(Figure(number.group(1) if number else "", text, fractions(regions[index])))
    for index, region in enumerate(regions):
        is_picture = any(region.contains(box) for box in pictures)
        if index not in used and is_picture and abs(region) >= _UNCAPTIONED_MIN_AREA * area:
            figures.append(Figure("", "", fractions(region)))
    return sorted(figures, key=lambda figure: (figure.box[1], figure.box[0]))


def page_fractions(page: pymupdf.Page) -> Callable[[pymupdf.Rect], Box]:
    """A box in points of the unrotated page (as the text layer gives them) -> fractions of the rendered
    page (which shows `page.rect`, rotated as the page is). The page's geometry is read once: each
    read is a call into MuPDF, and a page has hundreds of words."""
    matrix, width, height = page.rotation_matrix, page.rect.width, page.rect.height

    def fractions(box: pymupdf.Rect) -> Box:
        rect = box * matrix
        return tuple(
            round(min(1.0, max(0.0, v)), 4) for v in (rect.x0 / width, rect.y0 / height, rect.x1 / width, rect.y1 / height)
        )

    return fractions


def _figure_sized(box: pymupdf.Rect, page: pymupdf.Rect) -> bool:
    wide = box.width >= max(_MIN_SIDE_PT, _MIN_SIDE * page.width)
    high = box.height >= max(_MIN_SIDE_PT, _MIN_SIDE * page.height)
    return wide and high and abs(box) >= _MIN_AREA * abs(page)


def _merged(boxes: list[pymupdf.Rect]) -> list[pymupdf.Rect]:
    """Overlapping boxes joined into one (a picture with lines drawn over it, a drawing in parts)."""
    merged: list[pymupdf.Rect] = []
    for box in sorted(boxes, key=lambda b: (b.y0, b.x0)):
        for index, other in enumerate(merged):
            if other.intersects(box):
                merged[index] = other | box
                break
        else:
            merged.append(pymupdf.Rect(box))
    return merged


def _pairs(regions: list[pymupdf.Rect], captions: list[pymupdf.Rect], reach: float) -> list[tuple[int, int]]:
    """(caption, region) index pairs: each caption with a region just above or below it, each region
    taken once, the closest pairs first, and pairs that overlap across the page before those that do
    not (a short caption set flush left under a centred picture does not overlap it at all)."""
    candidates = []
    for c, caption in enumerate(captions):
        for r, region in enumerate(regions):
            gap = caption.y0 - region.y1 if region.y1 <= caption.y0 + 2 else region.y0 - caption.y1
            if -2 <= gap <= reach:
                overlaps = min(region.x1, caption.x1) - max(region.x0, caption.x0) > 0
                candidates.append((not overlaps, gap, c, r))
    pairs, paired_captions, paired_regions = [], set(), set()
    for _, _, c, r in sorted(candidates):
        if c not in paired_captions and r not in paired_regions:
            pairs.append((c, r))
            paired_captions.add(c)
            paired_regions.add(r)
    return pairs
