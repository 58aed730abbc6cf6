"""Indexing jobs: a PDF in, its pages searchable out. Idempotent, resumable, never half-visible.

- The book id is the file's content hash: adding the same file again does nothing.
- Pages are upserted (and made durable) batch by batch under ids derived from (book, page), so a
  run killed mid-book and started again skips the pages already stored and never duplicates one.
- A book is searchable only once its record says `complete` (search filters on it).
- A changed file (same file name, new content) replaces the old book once the new one is complete.
- The next batch of pages is extracted (render, text layer, OCR) on a worker thread while the current
  one is encoded and stored, so neither waits for the other; the seconds of each stage are reported.
- A page-encoder server that fails a batch, or a disk with less free space than `min_free_disk_mb`
  (checked before each batch: the embedded engine's memory-mapped writes would kill the process on a
  full disk rather than raise), fails the run with its reason; a rerun resumes the book.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from indexer.pages import BadPdfError, ExtractedPage, extract_pages, open_pdf, pdf_metadata
from indexer.settings import IndexerSettings
from rag.disk import free_mib
from rag.encoders import BM25, TEXT, visual_vectors
from rag.encoders.multivector import FixedDimensionalEncoder
from rag.encoders.page import PageEncoder
from rag.encoders.served import EncoderServiceError
from rag.encoders.text import TextEncoder
from rag.models import BookRecord, FigurePoint, FigurePointRecord, FigureRecord, PagePoint, PageRecord
from rag.page_images import crop_fraction
from rag.page_index import PageIndex, figure_point_id, page_point_id

log = logging.getLogger(__name__)

PAGES_PER_BATCH = 8
_IMAGE_WORKERS = 2  # threads WebP-encoding the page images of a batch
Progress = Callable[[int, int], None]  # (pages done, pages in the book)
StageSeconds = dict[str, float]  # stage name -> seconds spent in it (summed over threads)


@contextmanager
def _timed(seconds: StageSeconds, stage: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] += time.perf_counter() - started


@dataclass
class BookMeta:
    """What the user tells about a book; empty fields are filled from the PDF."""

    title: str = ""
    edition: str = ""
    license: str = ""
    organ_systems: list[str] = field(default_factory=list)
    source_name: str = ""  # the file name to record (default: the indexed file's; reindex keeps the user's)
    added_at: str = ""  # when the book was first added (default: now)


@dataclass
class IndexReport:
    path: Path
    status: str  # "indexed", "already indexed", "failed"
    book_id: str = ""
    pages_indexed: int = 0
    page_errors: list[BadPdfError] = field(default_factory=list)
    error: str = ""
    retryable: bool = False  # failed for a reason outside the book (the page-encoder service): try again later
    replaced: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stage_seconds: StageSeconds = field(default_factory=lambda: defaultdict(float))

    @property
    def ok(self) -> bool:
        return self.status != "failed" and not self.page_errors


def book_id_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:24]


def index_pdf(
    index: PageIndex, path: Path, meta: BookMeta | None = None, progress: Progress | None = None
) -> IndexReport:
    """Index one PDF (or finish an interrupted run of it). Bad input gives a failed report, not an exception.

    `index` must be opened with `IndexerSettings` (they say how pages are rendered and read).
    """
    settings = index.settings
    if not isinstance(settings, IndexerSettings):
        raise TypeError(f"index_pdf needs a PageIndex opened with IndexerSettings, not {type(settings).__name__}")
    started = time.monotonic()
    path = Path(path)
    report = IndexReport(path=path, status="failed")
    try:
        if not path.is_file():
            raise BadPdfError(path, None, "no such file")
        report.book_id = book_id = book_id_of(path)
        existing = index.book(book_id)
        if existing is not None and existing.complete:
            report.status = "already indexed"
            return report
        doc = open_pdf(path)
    except BadPdfError as error:
        report.error = str(error)
        return report
    except OSError as error:
        report.error = f"{path.name}: cannot read file: {error.strerror or error}"
        return report
    with doc:
        if low := _disk_too_full(settings):
            report.error = f"{path.name}: {low}; nothing was written (a rerun after that indexes the book)"
            report.retryable = True
            return report
        book = _start_book(index, path, book_id, doc, meta or BookMeta(), existing)
        _keep_source_copy(path, index.source_path(book_id))
        stored = index.stored_pages(book_id)
        todo = [n for n in range(1, doc.page_count + 1) if n not in stored]
        done = doc.page_count - len(todo)
        if progress:
            progress(done, doc.page_count)
        batch_size = max(PAGES_PER_BATCH, settings.page_encoder_concurrency)
        batches = _batches(_extract_all(doc, settings, todo, report), batch_size)
        times = report.stage_seconds

        def next_batch() -> list[ExtractedPage] | None:
            with _timed(times, "extract"):
                return next(batches, None)

        # One worker extracts the next batch while this thread encodes and stores the current one;
        # leaving the block waits for it, so the document is never closed under it.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="extract") as extractor:
            upcoming = extractor.submit(next_batch)
            while (batch := upcoming.result()) is not None:
                upcoming = extractor.submit(next_batch)
                if stopped := _disk_too_full(settings) or _encode_and_store(index, book, batch, times):
                    report.error = (
                        f"{path.name}: {stopped}. {done} of {doc.page_count} pages are stored; the book stays "
                        "hidden until a rerun of the same file finishes it"
                    )
                    report.retryable = True
                    return report
                done += len(batch)
                report.pages_indexed += len(batch)
                if progress:
                    progress(done + len(report.page_errors), doc.page_count)
    book = index.finish_book(book, [e.page for e in report.page_errors if e.page is not None])
    report.replaced = _remove_replaced(index, book)
    report.status = "indexed"
    report.seconds = time.monotonic() - started
    return report


def _disk_too_full(settings: IndexerSettings) -> str:
    """Why the data directory's disk is too full to index on ('' when it is not)."""
    free = free_mib(settings.data_dir)
    if free >= settings.min_free_disk_mb:
        return ""
    return (
        f"the disk of the data directory {settings.data_dir} has {free:.0f} MiB free, less than "
        f"min_free_disk_mb ({settings.min_free_disk_mb}); free some space"
    )


def _encode_and_store(index: PageIndex, book: BookRecord, batch: list[ExtractedPage], times: StageSeconds) -> str:
    """Encode and store one batch; why it could not be ('' when it was): the page encoder service
    failed, or the disk refused the write. Any other error is raised."""
    try:
        points = encode_pages(index, book, batch, times)
        with _timed(times, "store"):
            index.add_pages(points)
    except EncoderServiceError as error:
        return str(error)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        return f"the data directory's disk refused a write ({error.strerror})"
    return ""


def _start_book(
    index: PageIndex, path: Path, book_id: str, doc, meta: BookMeta, existing: BookRecord | None
) -> BookRecord:
    info = pdf_metadata(doc)
    book = BookRecord(
        book_id=book_id,
        title=meta.title or info.get("title") or path.stem,
        edition=meta.edition,
        license=meta.license,
        source_name=meta.source_name or path.name,
        organ_systems=list(meta.organ_systems),
        page_count=doc.page_count,
        added_at=meta.added_at
        or (existing.added_at if existing else datetime.now(UTC).isoformat(timespec="seconds")),
    )
    index.start_book(book)
    return book


def _extract_all(doc, settings: IndexerSettings, pages: list[int], report: IndexReport) -> Iterator[ExtractedPage]:
    """Extract pages in order; a page that fails is reported and skipped, the rest go on."""
    remaining = list(pages)
    while remaining:
        try:
            for page in extract_pages(doc, settings, remaining):
                remaining.remove(page.page)
                yield page
        except BadPdfError as error:
            log.warning("%s", error)
            report.page_errors.append(error)
            if error.page not in remaining:  # not a page error: the rest cannot be read either
                return
            remaining = remaining[remaining.index(error.page) + 1 :]


def _batches(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def encode_pages(
    index: PageIndex, book: BookRecord, pages: list[ExtractedPage], times: StageSeconds | None = None
) -> list[PagePoint]:
    """Page images stored, every channel's vectors computed; ready to upsert.

    The page images, figure crops (WebP: Pillow's encoder releases the GIL) and word boxes are written
    on worker threads while the models run, and the text chunks of all the pages go to the text encoder
    in one call rather than one call per page (measured in BENCHMARKS.md, "Indexing"); with a page
    encoder, the figure crops are encoded as pages are, in the pages' call. `times` gathers the seconds
    of each stage.
    """
    encoders = index.encoders
    times = defaultdict(float) if times is None else times
    crops = [[crop_fraction(page.image, figure.box) for figure in page.figures] for page in pages]

    def put_files(page: ExtractedPage, page_crops: list) -> tuple[str, str, list[FigureRecord]]:
        with _timed(times, "page images"):
            figures = [
                FigureRecord(number=f.number, caption=f.caption, box=f.box, image_key=index.images.put(crop))
                for f, crop in zip(page.figures, page_crops)
            ]
            return index.images.put(page.image), index.words.put(page.words), figures

    with ThreadPoolExecutor(max_workers=_IMAGE_WORKERS, thread_name_prefix="page-images") as pool:
        file_keys = pool.map(put_files, pages, crops)
        with _timed(times, "page encoder"):
            page_vectors, figure_vectors = _embed_images(encoders.page, [p.image for p in pages], crops)
        with _timed(times, "text encoder"):
            text_vectors = _embed_page_chunks(encoders.text, [p.text for p in pages])
        file_keys = list(file_keys)
    points = []
    for page, visual, figure_visuals, chunk_vectors, (image_key, words_key, figures) in zip(
        pages, page_vectors, figure_vectors, text_vectors, file_keys
    ):
        record = PageRecord(
            book_id=book.book_id,
            title=book.title,
            page=page.page,
            page_label=page.label,
            section_path=page.section_path,
            text=page.text,
            captions=page.captions,
            organ_systems=book.organ_systems,
            content_hash=hashlib.sha256(page.text.encode()).hexdigest()[:16],
            image_key=image_key,
            words_key=words_key,
            figures=figures,
            ocr=page.ocr,
            page_kind=page.kind,
        )
        point = PagePoint(point_id=page_point_id(book.book_id, page.page), record=record)
        if len(chunk_vectors):  # a multivector cannot be empty: a page without text has no text vector
            point.multi[TEXT] = chunk_vectors
        # The page text already holds its headings and captions; extra weight on them was measured
        # to hurt (BENCHMARKS.md), so the lexical vector is the plain page text.
        lexical = encoders.sparse.embed_document(page.text)
        if lexical.indices:
            point.sparse[BM25] = lexical
        if visual is not None:
            dense, multi = visual_vectors(visual, encoders.page.fde)
            point.dense |= dense
            point.multi |= multi
            point.figures = [_figure_point(record, point.point_id, n, tokens, encoders.page.fde)
                             for n, tokens in enumerate(figure_visuals, start=1)]  # fmt: skip
        points.append(point)
    return points


def _embed_images(
    encoder: PageEncoder | None, pages: list[Image.Image], crops: list[list[Image.Image]]
) -> tuple[list, list[list[np.ndarray]]]:
    """The page multivectors and each page's figure-crop multivectors, from one encoder call; Nones and
    empty lists without a page encoder."""
    if encoder is None:
        return [None] * len(pages), [[] for _ in pages]
    vectors = encoder.embed_pages(pages + [crop for page_crops in crops for crop in page_crops])
    figure_vectors = iter(vectors[len(pages) :])
    return vectors[: len(pages)], [[next(figure_vectors) for _ in page_crops] for page_crops in crops]


def _figure_point(
    page: PageRecord, page_point: str, figure: int, tokens: np.ndarray, fde: FixedDimensionalEncoder
) -> FigurePoint:
    dense, multi = visual_vectors(tokens, fde)
    record = FigurePointRecord(
        book_id=page.book_id, page=page.page, figure=figure, page_point_id=page_point,
        organ_systems=page.organ_systems, page_kind=page.page_kind,
    )  # fmt: skip
    return FigurePoint(figure_point_id(page.book_id, page.page, figure), record, dense, multi)


def _embed_page_chunks(text_encoder: TextEncoder, texts: list[str]) -> list[np.ndarray]:
    """The chunk vectors of each page, (n_chunks, dim) each, from one text-encoder call for all pages."""
    chunks = [text_encoder.chunk(text) for text in texts]
    vectors = text_encoder.embed_documents([chunk for page_chunks in chunks for chunk in page_chunks])
    ends = np.cumsum([len(page_chunks) for page_chunks in chunks])
    return np.split(vectors, ends[:-1]) if len(texts) else []


def _keep_source_copy(path: Path, target: Path) -> None:
    """A copy of the PDF under the data directory, so `reindex` needs no access to the original."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as tmp:
        with path.open("rb") as source:
            shutil.copyfileobj(source, tmp)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, target)


def _remove_replaced(index: PageIndex, book: BookRecord) -> list[str]:
    """Older books indexed from a file of the same name are replaced by this one."""
    old = [b.book_id for b in index.books() if b.source_name == book.source_name and b.book_id != book.book_id]
    for book_id in old:
        index.remove_book(book_id)
    return old


def reindex(settings: IndexerSettings, book_id: str | None = None, progress: Callable[[str], Progress] | None = None) -> list[IndexReport]:
    """Rebuild books from their stored source copies with the configured encoders.

    Without `book_id` the whole index is dropped and rebuilt (needed after changing encoders);
    the list of books is saved first, so an interrupted rebuild resumes from it.
    """
    plan_path = settings.data_dir / "reindex-plan.json"
    if book_id is None:
        if plan_path.exists():
            books = [BookRecord.model_validate(b) for b in json.loads(plan_path.read_text())]
        else:
            index = PageIndex(settings)
            books = index.books()
            plan_path.parent.mkdir(parents=True, exist_ok=True)
            plan_path.write_text(json.dumps([b.model_dump() for b in books]))
            index.drop()
            index.close()
    index = PageIndex(settings)
    try:
        if book_id is not None:
            # a single book can only be rebuilt with the encoders the index was built with
            books = [index.clear_book(book_id)]
        reports = []
        for book in books:
            source = index.source_path(book.book_id)
            meta = BookMeta(book.title, book.edition, book.license, book.organ_systems, book.source_name, book.added_at)
            report = index_pdf(index, source, meta, progress(book.title) if progress else None)
            report.path = Path(book.source_name or source.name)  # reports name the user's file, not the copy
            reports.append(report)
        plan_path.unlink(missing_ok=True)
        return reports
    finally:
        index.close()
