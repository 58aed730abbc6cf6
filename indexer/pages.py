"""PDF -> pages: rendered image, cleaned text (OCR when there is no text layer), label, captions, sections.

`open_pdf` refuses files that cannot be indexed with a `BadPdfError` a user can act on;
`extract_pages` yields one `ExtractedPage` per page and raises `BadPdfError` for a page that
cannot be read, so the caller decides whether to skip it or stop.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pymupdf
from PIL import Image

from indexer.figures import CAPTION_START, Figure, find_figures, page_fractions
from indexer.page_kinds import CONTENTS, FRONT, FRONT_MATTER_PAGES, Row, page_kind
from indexer.settings import IndexerSettings
from rag.models import BODY_PAGE
from rag.page_words import PageWords

log = logging.getLogger(__name__)

OCR_DPI = 300
OCR_MAX_PIXELS = 12_000_000  # A4 at 300 dpi is 8.7 Mpx; larger pages are OCRed at a lower dpi
_TEXT_FLAGS = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP  # ligatures expanded
_BOLD = 16  # span flag bit
_ITALIC = 2

_CAPTION_SEPARATOR = re.compile(r"\s*[.:—–-]")
_CHAPTER_LIKE = re.compile(r"(?:part|book|chapter|section)\b", re.IGNORECASE)
_PDF_MAGIC = b"%PDF-"
_OTHER_FORMATS = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"PK\x03\x04": "a ZIP archive (EPUB, DOCX, ...)",
    b"II*\x00": "a TIFF image",
    b"MM\x00*": "a TIFF image",
}


class BadPdfError(Exception):
    """A PDF, or one of its pages, that cannot be indexed. `page` is 1-based, None for the whole file."""

    def __init__(self, path: Path | str, page: int | None, reason: str) -> None:
        super().__init__(path, page, reason)
        self.path = Path(path)
        self.page = page
        self.reason = reason

    def __str__(self) -> str:
        where = f"{self.path.name}: page {self.page}" if self.page is not None else self.path.name
        return f"{where}: {self.reason}"


@dataclass
class ExtractedPage:
    page: int  # 1-based
    label: str  # printed page label, or the page number when the PDF has no labels
    text: str
    image: Image.Image
    words: PageWords  # where each word lies on `image`
    figures: list[Figure]  # where each lies on `image`, with its caption
    captions: list[str] = field(default_factory=list)
    section_path: list[str] = field(default_factory=list)
    headings: list[str] = field(default_factory=list)
    ocr: bool = False
    kind: str = BODY_PAGE  # or front, contents, index (indexer.page_kinds)


# --- opening ------------------------------------------------------------------------------


def open_pdf(path: Path) -> pymupdf.Document:
    """Open a PDF for indexing, or raise `BadPdfError` saying why it cannot be indexed."""
    path = Path(path)
    head, tail = _read_ends(path)
    if _PDF_MAGIC not in head:  # the header may follow up to 1 KiB of junk
        raise BadPdfError(path, None, f"not a PDF file ({_sniff(head)})")
    try:
        doc = pymupdf.open(path, filetype="pdf")
    except Exception as error:
        raise BadPdfError(path, None, f"corrupt PDF, cannot be opened: {error}") from error
    try:
        _check_opened(doc, path, tail)
    except BadPdfError:
        doc.close()
        raise
    return doc


def _read_ends(path: Path) -> tuple[bytes, bytes]:
    try:
        with path.open("rb") as file:
            head = file.read(1024)
            file.seek(max(0, path.stat().st_size - 1024))
            return head, file.read()
    except FileNotFoundError as error:
        raise BadPdfError(path, None, "file not found") from error
    except OSError as error:
        raise BadPdfError(path, None, f"cannot read file: {error.strerror or error}") from error


def _sniff(head: bytes) -> str:
    if not head:
        return "the file is empty"
    for magic, kind in _OTHER_FORMATS.items():
        if head.startswith(magic):
            return f"it looks like {kind}"
    return "no %PDF header"


def _check_opened(doc: pymupdf.Document, path: Path, tail: bytes) -> None:
    if doc.needs_pass:
        raise BadPdfError(path, None, "encrypted or password-protected PDF")
    if doc.is_repaired:
        # MuPDF rebuilds damaged files silently. Without the end marker the file was cut short
        # (typically an interrupted download): indexing it would silently lose pages.
        if b"%%EOF" not in tail:
            raise BadPdfError(path, None, "truncated PDF (no end-of-file marker); download or copy it again")
        log.warning("%s: damaged PDF, repaired by MuPDF; some pages may be incomplete", path.name)
    if doc.page_count == 0:
        raise BadPdfError(path, None, "PDF has no pages")


def pdf_metadata(doc: pymupdf.Document) -> dict[str, str]:
    """Title and author from the PDF's metadata; the title falls back to the file name."""
    meta = doc.metadata or {}
    return {
        "title": (meta.get("title") or "").strip() or Path(doc.name).stem,
        "author": (meta.get("author") or "").strip(),
    }


# --- pages --------------------------------------------------------------------------------


def extract_pages(
    doc: pymupdf.Document, settings: IndexerSettings, pages: Iterable[int] | None = None
) -> Iterator[ExtractedPage]:
    """Yield the given 1-based pages (all by default) in order.

    Raises `BadPdfError(path, page, reason)` for a page that cannot be read; the generator cannot
    go on after that, so to skip bad pages call it again with the remaining page numbers.
    """
    path = Path(doc.name)
    wanted = _page_numbers(doc, pages)
    toc = [(level, title.strip(), page) for level, title, page in doc.get_toc(simple=True) if page >= 1]
    sections = _SectionTracker(toc)
    front_matter_end = _first_contents_page(doc, path)
    for number in range(1, wanted[-1] + 1):
        sections.advance_to(number)
        if number in wanted:
            extracted = _extract_page(_load_page(doc, path, number), path, settings, sections)
            if number < front_matter_end:
                extracted.kind = FRONT
            yield extracted
        elif not toc:  # headings of skipped pages still carry forward
            try:
                sections.add_headings(_read_layout(_load_page(doc, path, number), path, None, sections.body_size))
            except BadPdfError as error:
                log.debug("headings of a skipped page lost: %s", error)


def _first_contents_page(doc: pymupdf.Document, path: Path) -> int:
    """The first contents page among the book's first pages (1 when there is none: no front matter)."""
    for number in range(1, min(doc.page_count, FRONT_MATTER_PAGES) + 1):
        try:
            if _read_layout(_load_page(doc, path, number), path, None, None).kind == CONTENTS:
                return number
        except BadPdfError:
            continue  # the page's own extraction reports it
    return 1


def _page_numbers(doc: pymupdf.Document, pages: Iterable[int] | None) -> list[int]:
    numbers = sorted(set(pages)) if pages is not None else list(range(1, doc.page_count + 1))
    if not numbers:
        raise ValueError("no pages requested")
    if numbers[0] < 1 or numbers[-1] > doc.page_count:
        raise ValueError(f"page numbers must lie in 1..{doc.page_count}, got {numbers[0]}..{numbers[-1]}")
    return numbers


def _load_page(doc: pymupdf.Document, path: Path, number: int) -> pymupdf.Page:
    with _failing_as(path, number, "cannot load page"):
        return doc.load_page(number - 1)


def _extract_page(page: pymupdf.Page, path: Path, settings: IndexerSettings, sections: _SectionTracker) -> ExtractedPage:
    number = page.number + 1
    with _failing_as(path, number, "cannot read page label"):
        label = page.get_label() or str(number)
    with _failing_as(path, number, "cannot render"):
        image = render_page(page, settings.render_dpi, settings.max_page_pixels)
    layout = _read_layout(page, path, None, sections.body_size)
    ocr_textpage = _ocr_textpage(page, settings) if _needs_ocr(layout, settings) else None
    if ocr_textpage is not None:
        layout = _read_layout(page, path, ocr_textpage, sections.body_size)
    # OCR gives no reliable font sizes or weights: headings are only read from a text layer.
    headings = [] if ocr_textpage is not None else sections.add_headings(layout)
    return ExtractedPage(
        page=number,
        label=label,
        text=layout.text,
        image=image,
        words=_read_words(page, path, ocr_textpage),
        figures=page_figures(page, path, layout),
        captions=layout.captions,
        section_path=sections.path,
        headings=headings,
        ocr=ocr_textpage is not None,
        kind=layout.kind,
    )


@contextmanager
def _failing_as(path: Path, number: int, what: str) -> Iterator[None]:
    """Turn any error of MuPDF inside the block into a `BadPdfError` for this page."""
    try:
        yield
    except Exception as error:
        raise BadPdfError(path, number, f"{what}: {error}") from error


# --- rendering ----------------------------------------------------------------------------


def render_page(page: pymupdf.Page, dpi: int, max_pixels: int) -> Image.Image:
    """Render to RGB at `dpi`, scaled down so that width * height <= max_pixels."""
    zoom = page_zoom(page.rect, dpi, max_pixels)
    pixmap = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csRGB, alpha=False)
    return Image.frombytes("RGB", (pixmap.width, pixmap.height), pixmap.samples)


def page_zoom(rect: pymupdf.Rect, dpi: int, max_pixels: int) -> float:
    """The zoom for `dpi`, reduced *before* rendering so that huge pages never allocate huge pixmaps."""
    if rect.is_empty:
        raise ValueError(f"page has no area ({rect})")
    width, height = rect.width, rect.height
    zoom = dpi / 72
    # Pixmap sides are rounded outwards (up to 2 px each), so solve (w z + 2)(h z + 2) <= max_pixels.
    if (width * zoom + 2) * (height * zoom + 2) > max_pixels:
        a, b, c = width * height, 2 * (width + height), 4 - max_pixels
        zoom = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    return zoom


# --- text, captions, headings ---------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    text: str
    size: float
    bold: bool
    italic: bool
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in PDF points


@dataclass(frozen=True)
class _Block:
    lines: list[_Line]
    text: str
    caption: bool


@dataclass(frozen=True)
class _Layout:
    blocks: list[_Block]
    body_size: float

    @property
    def text(self) -> str:
        return "\n".join(block.text for block in self.blocks)

    @property
    def captions(self) -> list[str]:
        return [block.text for block in self.blocks if block.caption]

    @property
    def kind(self) -> str:
        rows = [Row(line.text, line.box[0], line.box[1], line.box[3]) for block in self.blocks for line in block.lines]
        return page_kind(rows)


def _read_layout(
    page: pymupdf.Page, path: Path, textpage: pymupdf.TextPage | None, body_size: float | None
) -> _Layout:
    """Blocks of styled lines of a page (from `textpage` when given, e.g. OCR)."""
    with _failing_as(path, page.number + 1, "cannot read text"):
        raw_blocks = page.get_text("dict", flags=_TEXT_FLAGS, textpage=textpage)["blocks"]
    lines = [block_lines for raw in raw_blocks if (block_lines := _block_lines(raw))]
    body = _body_size(lines) or body_size or 0.0
    blocks: list[_Block] = []
    for block_lines in lines:
        text = _join_lines([line.text for line in block_lines])
        if blocks and _continues_caption(blocks[-1], block_lines, body):
            previous = blocks.pop()
            block_lines, text = previous.lines + block_lines, f"{previous.text} {text}"
        blocks.append(_Block(block_lines, text, _is_caption(text, block_lines, body)))
    return _Layout(blocks, body)


def _read_words(page: pymupdf.Page, path: Path, textpage: pymupdf.TextPage | None) -> PageWords:
    """The page's words with their boxes as fractions of the rendered page (which shows `page.rect`,
    rotated as the page is; the text layer's coordinates are those of the unrotated page)."""
    with _failing_as(path, page.number + 1, "cannot read word positions"):
        raw = page.get_text("words", flags=_TEXT_FLAGS, textpage=textpage)
    line_numbers: dict[tuple[int, int], int] = {}
    words, boxes, lines = [], [], []
    fractions = page_fractions(page)
    for x0, y0, x1, y1, word, block, line, _ in raw:
        words.append(word)
        boxes.append(fractions(pymupdf.Rect(x0, y0, x1, y1)))
        lines.append(line_numbers.setdefault((block, line), len(line_numbers)))
    return PageWords(words, boxes, lines)


def page_figures(page: pymupdf.Page, path: Path, layout: _Layout) -> list[Figure]:
    """The page's figures: its pictures and drawings, with the captions of `layout`."""
    captions = [caption for block in layout.blocks if block.caption for caption in _split_captions(block)]
    with _failing_as(path, page.number + 1, "cannot find figures"):
        pictures = [pymupdf.Rect(info["bbox"]) for info in page.get_image_info()]  # boxes only, no pixels
        return find_figures(page, pictures, captions)


def _split_captions(block: _Block) -> list[tuple[str, pymupdf.Rect]]:
    """A caption block's captions (text, box): the captions of figures side by side can share one block,
    each starting on a line of its own ("Fig. 14.-..." then "Fig. 15.-...")."""
    runs: list[list[_Line]] = []
    for line in block.lines:
        if not runs or CAPTION_START.match(line.text):
            runs.append([line])
        else:
            runs[-1].append(line)
    return [(_join_lines([line.text for line in run]), _union(line.box for line in run)) for run in runs]


def _union(boxes: Iterable[tuple[float, float, float, float]]) -> pymupdf.Rect:
    rect = pymupdf.Rect()
    for box in boxes:
        rect |= pymupdf.Rect(box)
    return rect


def _continues_caption(previous: _Block, lines: list[_Line], body_size: float) -> bool:
    """A block in a caption's own (non-body) style right after it is the rest of that caption."""
    last, first = previous.lines[-1], lines[0]
    same_style = (last.size, last.bold, last.italic) == (first.size, first.bold, first.italic)
    body_style = last.size == body_size and not (last.bold or last.italic)
    return previous.caption and same_style and not body_style and not CAPTION_START.match(first.text)


def _block_lines(block: dict) -> list[_Line]:
    lines = []
    for line in block.get("lines", []):
        spans = [span for span in line["spans"] if span["text"].strip()]
        if not spans:
            continue
        main = max(spans, key=lambda span: len(span["text"]))
        lines.append(
            _Line(
                text=_clean(" ".join(span["text"] for span in spans)),
                size=round(main["size"], 1),
                bold=all(span["flags"] & _BOLD or "bold" in span["font"].lower() for span in spans),
                italic=all(span["flags"] & _ITALIC for span in spans),
                box=tuple(line["bbox"]),
            )
        )
    return lines


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u00ad", "")).strip()


def _join_lines(lines: list[str]) -> str:
    """Join the lines of a block, mending words hyphenated across a line end ("inflam-" + "mation")."""
    joined = ""
    for line in lines:
        if len(joined) > 1 and joined[-1] == "-" and joined[-2].isalpha() and line[0].islower():
            joined = joined[:-1] + line
        else:
            joined = f"{joined} {line}" if joined else line
    return joined


def _body_size(lines: list[list[_Line]], min_chars: int = 200) -> float | None:
    """The most common font size by characters; None on pages with too little text to tell."""
    sizes: Counter[float] = Counter()
    for block in lines:
        for line in block:
            sizes[line.size] += len(line.text)
    if sizes.total() < min_chars:
        return None
    return sizes.most_common(1)[0][0]


def _is_caption(text: str, block: list[_Line], body_size: float) -> bool:
    """A block that starts with a figure/plate number, then punctuation or a caption's own style."""
    start = CAPTION_START.match(text)
    if start is None:
        return False
    if _CAPTION_SEPARATOR.match(text, start.end()):
        return True
    styled = all(line.italic for line in block) or all(line.bold for line in block)
    return styled or max(line.size for line in block) < body_size - 0.25


def _is_heading(line: _Line, body_size: float) -> bool:
    text = line.text
    if not 3 <= len(text) <= 120 or not any(char.isalpha() for char in text) or text[-1] in ",;":
        return False
    if not body_size:
        return line.bold
    return line.size >= body_size * 1.15 or (line.bold and line.size >= body_size - 0.25)


def _page_headings(layout: _Layout) -> list[tuple[str, float]]:
    """(title, size) of heading lines; consecutive heading lines of one block and size are one title."""
    headings: list[tuple[str, float]] = []
    for block in layout.blocks:
        if block.caption:
            continue
        previous: _Line | None = None
        for line in block.lines:
            is_heading = _is_heading(line, layout.body_size)
            if is_heading and previous is not None and previous.size == line.size:
                headings[-1] = (f"{headings[-1][0]} {line.text}", line.size)
            elif is_heading:
                headings.append((line.text, line.size))
            previous = line if is_heading else None
    return headings


def _heading_rank(title: str, size: float) -> tuple[float, ...]:
    """Smaller ranks are higher levels: "Chapter"/"Part"-like titles, then larger fonts, then CAPITALS."""
    return (0 if _CHAPTER_LIKE.match(title) else 1, -size, 0 if title.isupper() else 1)


class _SectionTracker:
    """The section path in force at the end of each page, read in page order.

    From the PDF outline when it has one; otherwise from detected headings, where a heading closes
    the open sections of its rank or lower (see `_heading_rank`).
    """

    def __init__(self, toc: list[tuple[int, str, int]]) -> None:
        self._toc = toc
        self._next_toc = 0
        self._stack: list[tuple[tuple[float, ...], str]] = []
        self.body_size: float | None = None

    @property
    def path(self) -> list[str]:
        return [title for _, title in self._stack]

    def add_headings(self, layout: _Layout) -> list[str]:
        """Record one page's headings (in page order) and return their titles."""
        if layout.body_size:
            self.body_size = layout.body_size
        headings = _page_headings(layout)
        if not self._toc:
            for title, size in headings:
                self._push(_heading_rank(title, size), title)
        return [title for title, _ in headings]

    def advance_to(self, page: int) -> None:
        """Open the outline entries that start on or before `page`."""
        while self._next_toc < len(self._toc) and self._toc[self._next_toc][2] <= page:
            level, title, _ = self._toc[self._next_toc]
            self._push((level,), title)
            self._next_toc += 1

    def _push(self, rank: tuple[float, ...], title: str) -> None:
        while self._stack and self._stack[-1][0] >= rank:
            self._stack.pop()
        self._stack.append((rank, title))


# --- OCR ----------------------------------------------------------------------------------


def _needs_ocr(layout: _Layout, settings: IndexerSettings) -> bool:
    return settings.ocr and sum(not char.isspace() for char in layout.text) < settings.ocr_min_chars


def _ocr_textpage(page: pymupdf.Page, settings: IndexerSettings) -> pymupdf.TextPage | None:
    """OCR the whole page with Tesseract; None (text layer kept) when Tesseract is unavailable or fails."""
    tessdata = _tessdata(settings.ocr_language)
    if tessdata is None:
        return None
    dpi = max(1, int(page_zoom(page.rect, OCR_DPI, OCR_MAX_PIXELS) * 72))
    try:
        return page.get_textpage_ocr(
            flags=_TEXT_FLAGS, language=settings.ocr_language, dpi=dpi, full=True, tessdata=tessdata
        )
    except Exception as error:
        log.warning("%s: page %d: OCR failed, keeping the text layer: %s", page.parent.name, page.number + 1, error)
        return None


@functools.cache
def _tessdata(language: str) -> str | None:
    """Tesseract's language folder, looked up once per process; warns once when OCR is impossible."""
    folder = _locate_tessdata()
    if folder is None:
        log.warning(
            "Tesseract not found (install tesseract-ocr or set TESSDATA_PREFIX): "
            "pages without a text layer are indexed without OCR"
        )
        return None
    missing = [lang for lang in language.split("+") if not (Path(folder) / f"{lang}.traineddata").is_file()]
    if missing:
        log.warning("Tesseract has no data for %s in %s: pages are indexed without OCR", "+".join(missing), folder)
        return None
    return folder


def _locate_tessdata() -> str | None:
    if not os.getenv("TESSDATA_PREFIX") and shutil.which("tesseract") is None:
        return None
    try:
        return pymupdf.get_tessdata()
    except RuntimeError:
        return None
