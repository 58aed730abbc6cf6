"""The library facade (`PageIndex`): books resolved, hidden, cleared and removed, pages and page images,
on a real PDF in the embedded store; the indexer, agent, server and CLI use nothing else."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from indexer.jobs import index_pdf
from indexer.settings import IndexerSettings
from rag.page_index import NotInIndexError, PageIndex
from tests.conftest import PATHOLOGY_PAGES, write_pathology_book

pytestmark = pytest.mark.slow


@pytest.fixture
def library(tmp_path: Path, text_only_encoders):
    settings = IndexerSettings(_env_file=None, data_dir=tmp_path / "data", page_encoder="none", ocr=False, render_dpi=72)
    index = PageIndex(settings, encoders=text_only_encoders)
    first = index_pdf(index, write_pathology_book(tmp_path / "essentials.pdf"))
    second = index_pdf(index, write_pathology_book(tmp_path / "atlas.pdf", title="Atlas of pathology"))
    assert first.status == second.status == "indexed"
    yield index, first.book_id, second.book_id
    index.close()


def test_books_are_resolved_by_id_prefix_or_file_name(library) -> None:
    index, first, second = library
    assert {book.book_id for book in index.books()} == {first, second}
    assert index.resolve_book(first).book_id == first
    assert index.resolve_book(second[:6]).book_id == second
    assert index.resolve_book("atlas.pdf").book_id == second
    with pytest.raises(NotInIndexError, match="no book matches 'nosuch'"):
        index.resolve_book("nosuch")
    with pytest.raises(NotInIndexError, match="several books match ''"):
        index.resolve_book("")


def test_pages_and_page_images_of_complete_books_only(library) -> None:
    index, first, _ = library
    record = index.page(first, 4)
    assert record is not None and "cirrhosis" in record.text.lower()
    assert index.page(first, len(PATHOLOGY_PAGES) + 1) is None
    full = Image.open(io.BytesIO(index.page_image(first, 4)))
    thumb = Image.open(io.BytesIO(index.page_image(first, 4, max_side=64)))
    assert full.format == thumb.format == "WEBP" and max(thumb.size) == 64 < max(full.size)
    with pytest.raises(NotInIndexError, match="no such page"):
        index.page_image(first, len(PATHOLOGY_PAGES) + 1)
    book = index.book(first)
    index.start_book(book)  # being indexed again: hidden, its images too
    assert first not in {b.book_id for b in index.complete_books()}
    with pytest.raises(NotInIndexError, match="no such book"):
        index.page_image(first, 4)


def test_clear_book_hides_it_before_its_pages_go(library) -> None:
    index, first, second = library
    cleared = index.clear_book(first)
    assert cleared.book_id == first
    assert index.book(first).status == "indexing" and index.count_pages(first) == 0
    assert [b.book_id for b in index.complete_books()] == [second]
    assert index.count_pages(second) == len(PATHOLOGY_PAGES)  # the other book is untouched
    with pytest.raises(NotInIndexError, match="no book with id"):
        index.clear_book("0" * 24)


def test_remove_book_takes_its_pages_and_source_copy(library) -> None:
    index, first, second = library
    assert index.source_path(first).is_file()
    assert index.remove_book(first) is True
    assert index.book(first) is None and index.count_pages(first) == 0
    assert not index.source_path(first).exists()
    assert index.remove_book(first) is False
    assert index.source_path(second).is_file() and index.book(second).complete


def test_the_book_list_is_read_once_and_follows_changes(library, monkeypatch) -> None:
    import rag.page_index

    index, first, second = library
    reads = []
    list_books = index.store.list_books
    monkeypatch.setattr(index.store, "list_books", lambda: reads.append(1) or list_books())
    index.start_book(index.book(first))  # a change through this index is seen at once
    assert [b.book_id for b in index.complete_books()] == [second] and len(reads) == 1
    assert index.resolve_book(second).book_id == second and len(index.books()) == 2 and len(reads) == 1
    other = index.with_settings(index.settings)  # another reader of the same store (as another process)
    other.finish_book(index.book(first), [])
    assert [b.book_id for b in index.complete_books()] == [second]  # not yet: kept up to CATALOG_TTL_S
    monkeypatch.setattr(rag.page_index, "CATALOG_TTL_S", 0.0)
    assert sorted(b.book_id for b in index.complete_books()) == sorted([first, second])
