"""Small PDFs written with PyMuPDF for tests: good ones, odd ones and broken ones.

Every function writes to the given path and returns it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pymupdf

A4 = pymupdf.paper_rect("a4")
MARGIN = 56
BODY_SIZE = 11
HEADING_SIZE = 16
CAPTION_SIZE = 9


@dataclass(frozen=True)
class PageSpec:
    """One text page: an optional bold heading, body text, an optional figure with its caption."""

    text: str = ""
    heading: str | None = None
    caption: str | None = None


def write_text_pdf(
    path: Path,
    pages: Sequence[str | PageSpec],
    *,
    toc: Sequence[tuple[int, str, int]] = (),
    labels: Sequence[dict] = (),
    metadata: dict[str, str] | None = None,
) -> Path:
    """Text pages with a real text layer.

    `toc` holds outline entries `(level, title, 1-based page)`; `labels` are PyMuPDF page-label
    rules, e.g. `{"startpage": 0, "style": "r", "firstpagenum": 1}`.
    """
    doc = pymupdf.open()
    for spec in pages:
        spec = PageSpec(text=spec) if isinstance(spec, str) else spec
        _draw_text_page(doc.new_page(width=A4.width, height=A4.height), spec)
    if toc:
        doc.set_toc([list(entry) for entry in toc])
    if labels:
        doc.set_page_labels(list(labels))
    if metadata:
        doc.set_metadata(metadata)
    doc.save(path)
    return path


def write_image_only_pdf(path: Path, texts: Sequence[str], dpi: int = 200) -> Path:
    """Pages that show `texts` as pictures only: no text layer, so only OCR can read them."""
    doc = pymupdf.open()
    for text in texts:
        scratch = pymupdf.open()
        page = scratch.new_page(width=A4.width, height=A4.height)
        page.insert_textbox(_inner(page.rect), text, fontsize=20, fontname="helv")
        pixmap = page.get_pixmap(dpi=dpi, alpha=False)
        doc.new_page(width=A4.width, height=A4.height).insert_image(A4, pixmap=pixmap)
    doc.save(path)
    return path


def write_encrypted_pdf(path: Path, password: str = "secret") -> Path:
    """A one-page PDF that needs a user password to open."""
    doc = pymupdf.open()
    doc.new_page().insert_text((MARGIN, MARGIN), "Locked content.", fontsize=BODY_SIZE)
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw=password, owner_pw=password + "-owner")
    return path


def write_truncated_pdf(path: Path, pages: int = 6) -> Path:
    """A valid text PDF cut in half, like an interrupted download."""
    full = write_text_pdf(path, [f"Page {n} of a book that never finished downloading." for n in range(1, pages + 1)])
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_not_a_pdf(path: Path, kind: str = "png") -> Path:
    """A PNG image (`kind="png"`) or plain text (`kind="text"`) saved under a .pdf name."""
    if kind == "png":
        path.write_bytes(pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 8, 8), False).tobytes("png"))
    elif kind == "text":
        path.write_text("These are lecture notes, not a PDF.\n")
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return path


def write_zero_page_pdf(path: Path) -> Path:
    """A well-formed PDF whose page tree is empty (PyMuPDF refuses to save one, so raw bytes)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_at)
    path.write_bytes(bytes(out))
    return path


def write_huge_page_pdf(path: Path, inches: float = 200) -> Path:
    """One square page `inches` wide (200 in is the PDF maximum) with a line of text."""
    doc = pymupdf.open()
    page = doc.new_page(width=inches * 72, height=inches * 72)
    page.insert_text((MARGIN, MARGIN * 4), "An enormous wall chart of the lymphatic system.", fontsize=120)
    doc.save(path)
    return path


def _draw_text_page(page: pymupdf.Page, spec: PageSpec) -> None:
    top = MARGIN
    if spec.heading:
        page.insert_text((MARGIN, top + HEADING_SIZE), spec.heading, fontsize=HEADING_SIZE, fontname="hebo")
        top += HEADING_SIZE * 2.5
    if spec.caption:
        figure = pymupdf.Rect(MARGIN, top, MARGIN + 200, top + 150)
        page.draw_rect(figure, color=(0, 0, 0), fill=(0.8, 0.6, 0.7))
        caption_box = pymupdf.Rect(MARGIN, figure.y1 + 6, A4.width - MARGIN, figure.y1 + 6 + CAPTION_SIZE * 4)
        page.insert_textbox(caption_box, spec.caption, fontsize=CAPTION_SIZE, fontname="heit")
        top = caption_box.y1 + BODY_SIZE
    if spec.text:
        body = pymupdf.Rect(MARGIN, top, A4.width - MARGIN, A4.height - MARGIN)
        if page.insert_textbox(body, spec.text, fontsize=BODY_SIZE, fontname="tiro") < 0:
            raise ValueError("page text does not fit on one page")


def _inner(rect: pymupdf.Rect) -> pymupdf.Rect:
    return rect + (MARGIN, MARGIN, -MARGIN, -MARGIN)
