"""The page index: the library of books as rag keeps it. The only way into the vector store.

It holds the vector store, the encoders that fill it and the page images, kept consistent, and
answers for books (list, resolve, status, remove, their pages and page images) for the indexer, the
agent and the server alike; they never reach the store themselves.

The index records which encoders built it, and how (the page encoder's `pooling` names the layout
of the visual candidate vectors: FDE parameters and centroids). Searching or adding with different
encoders or another layout would compare vectors from different spaces, or miss vectors, so it is
refused with a pointer to `pathorag index reindex`.
"""

from __future__ import annotations

import time
import uuid
from functools import cached_property
from pathlib import Path

from rag.encoders import Encoders, load_encoders
from rag.models import BookRecord, Box, EncoderInfo, PagePoint, PageRecord
from rag.page_images import PageImageStore
from rag.page_words import PageWordStore, passage_boxes
from rag.settings import RagSettings
from rag.store import VectorStore, open_store

# Page point ids are derived from (book, page) so re-indexing a page overwrites it, never duplicates it.
_POINT_NAMESPACE = uuid.UUID("6f1d8a52-3c1e-4f55-9a43-2b8f0c7e9d11")
META_VERSION = 1
# The book list is read once and kept: every search filters by it, and with thousands of books it
# takes tens of milliseconds to read. Changes made through this index are seen at once; those of
# another process on a shared Qdrant server within this many seconds.
CATALOG_TTL_S = 5.0


class EncoderMismatchError(RuntimeError):
    """The index was built with other encoders than the configured ones."""


class NotInIndexError(LookupError):
    """No such book or page (or a reference that names several books); the message says which."""

    def __str__(self) -> str:
        return self.args[0]


def page_point_id(book_id: str, page: int) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{book_id}:{page}"))


def figure_point_id(book_id: str, page: int, figure: int) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{book_id}:{page}:figure {figure}"))


class PageIndex:
    """Opens the store lazily and loads encoders on first use (loading models takes seconds)."""

    def __init__(
        self, settings: RagSettings, store: VectorStore | None = None, encoders: Encoders | None = None
    ) -> None:
        self.settings = settings
        self._store = store
        self._encoders = encoders
        self.images = PageImageStore(settings.page_images_dir)
        self.words = PageWordStore(settings.page_words_dir)
        self._catalog: tuple[float, list[BookRecord]] | None = None  # (read at, books)
        self._catalog_changes = 0

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    @cached_property
    def encoders(self) -> Encoders:
        encoders = self._encoders or load_encoders(self.settings)
        self._check_encoders(encoders)
        return encoders

    def _check_encoders(self, encoders: Encoders) -> None:
        meta = self.store.get_meta()
        wanted = {name: info.model_dump() for name, info in encoders.infos().items()}
        if meta is None:
            self.store.ensure_schema(encoders.vector_specs(), encoders.figure_vector_specs())
            self.store.put_meta({"version": META_VERSION, "encoders": wanted})
            return
        # Normalised through EncoderInfo: an index recorded before a field existed has its default.
        built = {name: EncoderInfo.model_validate(info).model_dump() for name, info in meta.get("encoders", {}).items()}
        if built != wanted:
            raise EncoderMismatchError(
                "The index was built with other encoders or vector layouts than the configured ones:\n"
                + describe_encoder_change(built, wanted)
                + "\nRun `pathorag index reindex` to rebuild it with the configured encoders, "
                "or restore the settings it was built with."
            )
        self.store.ensure_schema(encoders.vector_specs(), encoders.figure_vector_specs())

    def with_settings(self, settings: RagSettings) -> PageIndex:
        """The same store and encoders under other query-time settings (e.g. fusion weights)."""
        return PageIndex(settings, store=self.store, encoders=self.encoders)

    # --- books -----------------------------------------------------------------------------
    def books(self) -> list[BookRecord]:
        """Every book record, whatever its status (read from the store at most every CATALOG_TTL_S
        seconds, and again after any change made through this index)."""
        cached = self._catalog
        if cached is not None and time.monotonic() - cached[0] < CATALOG_TTL_S:
            return list(cached[1])
        changes = self._catalog_changes
        books = self.store.list_books()
        if changes == self._catalog_changes:  # no change while it was read: the list is current
            self._catalog = (time.monotonic(), books)
        return list(books)

    def _catalog_changed(self) -> None:
        self._catalog_changes += 1
        self._catalog = None

    def complete_books(self) -> list[BookRecord]:
        """The searchable books."""
        return [book for book in self.books() if book.complete]

    def book(self, book_id: str) -> BookRecord | None:
        return self.store.get_book(book_id)

    def resolve_book(self, ref: str) -> BookRecord:
        """The one book that `ref` names: its id, a unique id prefix, or the file name it was indexed from."""
        books = self.books()
        matches = [b for b in books if b.book_id == ref] or [
            b for b in books if b.book_id.startswith(ref) or b.source_name == ref
        ]
        if len(matches) != 1:
            raise NotInIndexError(f"{'several books match' if matches else 'no book matches'} {ref!r}")
        return matches[0]

    def count_pages(self, book_id: str) -> int:
        return self.store.count_pages(book_id)

    def stored_pages(self, book_id: str) -> set[int]:
        """Page numbers of the book already stored (an interrupted indexing run resumes after them)."""
        return self.store.page_numbers(book_id)

    def source_path(self, book_id: str) -> Path:
        """Where the copy of the book's PDF is kept (so it can be rebuilt without the original)."""
        return self.settings.books_dir / f"{book_id}.pdf"

    def start_book(self, book: BookRecord) -> None:
        """Record a book as `indexing` (never searchable) before any of its pages is stored."""
        self.encoders  # refuse a mismatched index before anything is written
        self.store.put_book(book.model_copy(update={"status": "indexing"}))
        self._catalog_changed()

    def add_pages(self, points: list[PagePoint]) -> None:
        """Store pages (durably): a page stored again under the same (book, page) replaces itself."""
        self.store.upsert_pages(points)

    def finish_book(self, book: BookRecord, failed_pages: list[int]) -> BookRecord:
        """Make a book searchable, with the pages that could not be read."""
        book = book.model_copy(update={"status": "complete", "failed_pages": sorted(failed_pages)})
        self.store.put_book(book)
        self._catalog_changed()
        return book

    def clear_book(self, book_id: str) -> BookRecord:
        """Hide a book and delete its pages, to be indexed again (`start_book` and on)."""
        book = self.book(book_id)
        if book is None:
            raise NotInIndexError(f"no book with id {book_id!r} in the index")
        self.start_book(book)
        self.store.delete_book_pages(book_id)
        return book

    def remove_book(self, book_id: str) -> bool:
        """Remove a book, its pages and its source copy. False if there is no such book.

        The record is first marked `removing` (not searchable), so a crash part-way leaves nothing
        visible and running the removal again finishes it.
        """
        book = self.book(book_id)
        if book is None:
            return False
        self.store.put_book(book.model_copy(update={"status": "removing"}))
        self._catalog_changed()
        self.store.delete_book_pages(book_id)
        self.store.delete_book(book_id)
        self._catalog_changed()
        self.source_path(book_id).unlink(missing_ok=True)
        return True

    def drop(self) -> None:
        """Delete every book and page (a full rebuild; the page images and source copies stay)."""
        self.store.drop()
        self._catalog_changed()

    # --- pages -----------------------------------------------------------------------------
    def page(self, book_id: str, page: int) -> PageRecord | None:
        """One stored page of a book, whatever the book's status."""
        point = page_point_id(book_id, page)
        return self.store.get_pages([point]).get(point)

    def page_image(self, book_id: str, page: int, max_side: int | None = None) -> bytes:
        """The stored WebP of a page of a complete book, or a thumbnail no larger than `max_side`."""
        record = self._complete_page(book_id, page)
        if not record.image_key:
            raise NotInIndexError("no such page")
        return self._image(record.image_key, max_side, "no image for this page")

    def figure_image(self, book_id: str, page: int, figure: int, max_side: int | None = None) -> bytes:
        """The WebP crop of a page's `figure` (1-based, top to bottom), or a thumbnail of it."""
        figures = self._complete_page(book_id, page).figures
        if not 1 <= figure <= len(figures):
            raise NotInIndexError(f"this page has {len(figures)} figure(s), not a figure {figure}")
        return self._image(figures[figure - 1].image_key, max_side, "no image for this figure")

    def _complete_page(self, book_id: str, page: int) -> PageRecord:
        book = self.book(book_id)
        if book is None or not book.complete:
            raise NotInIndexError("no such book")
        record = self.page(book_id, page)
        if record is None:
            raise NotInIndexError("no such page")
        return record

    def _image(self, key: str, max_side: int | None, missing: str) -> bytes:
        try:
            if max_side is None:
                return self.images.path(key).read_bytes()
            return self.images.thumbnail(key, max_side)
        except (KeyError, FileNotFoundError, ValueError):
            raise NotInIndexError(missing) from None

    def passage_boxes(self, words_key: str, passage: str) -> list[Box]:
        """Where `passage` lies on its page's image (one box per line); [] when the page has no stored
        words (indexed before they were kept) or the passage is not on it."""
        if not words_key or not passage:
            return []
        try:
            words = self.words.get(words_key)
        except (KeyError, ValueError):
            return []
        return passage_boxes(words, passage)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def describe_encoder_change(built: dict, wanted: dict) -> str:
    lines = []
    for channel in sorted(set(built) | set(wanted)):
        old, new = built.get(channel), wanted.get(channel)
        if old != new:
            lines.append(f"  {channel}: index has {_short(old)}, settings give {_short(new)}")
    return "\n".join(lines)


def _short(info: dict | None) -> str:
    if info is None:
        return "no such channel"
    how = ", ".join(filter(None, [info.get("runtime"), info.get("input_format")]))
    return (
        f"{info['name']} ({how}; revision {info.get('revision') or '-'}, dim {info['dim']}, "
        f"{info.get('pooling') or '-'})"
    )
