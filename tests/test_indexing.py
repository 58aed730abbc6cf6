"""Indexing jobs end to end: real PyMuPDF, the embedded qdrant-edge store, real MiniLM, tiny ColQwen2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pymupdf
import pytest

from indexer.jobs import PAGES_PER_BATCH, book_id_of, index_pdf, reindex
from indexer.settings import IndexerSettings
from rag.page_index import EncoderMismatchError, PageIndex, page_point_id
from rag.search import SearchError, SearchQuery, search_pages
from tests import pdf_factory
from tests.conftest import PATHOLOGY_PAGES, write_case_book, write_pathology_book

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(tmp_path: Path) -> IndexerSettings:
    return IndexerSettings(_env_file=None, data_dir=tmp_path / "data", page_encoder="none", ocr=False, render_dpi=72)


@pytest.fixture
def index(settings: IndexerSettings, text_only_encoders):
    index = PageIndex(settings, encoders=text_only_encoders)
    yield index
    index.close()


def top_pages(index: PageIndex, text: str, **query) -> list[tuple[str, int]]:
    return [(hit.book_id, hit.page) for hit in search_pages(index, SearchQuery(text=text, **query))]


def all_pages(index: PageIndex, book_id: str, page_count: int) -> dict:
    return index.store.get_pages([page_point_id(book_id, n) for n in range(1, page_count + 1)])


# --- a good book --------------------------------------------------------------------------------


def test_index_a_text_pdf(tmp_path: Path, index: PageIndex, settings: IndexerSettings) -> None:
    pdf = write_pathology_book(tmp_path / "essentials.pdf")
    progress: list[tuple[int, int]] = []

    report = index_pdf(index, pdf, progress=lambda done, total: progress.append((done, total)))

    n = len(PATHOLOGY_PAGES)
    assert (report.status, report.ok, report.pages_indexed, report.error) == ("indexed", True, n, "")
    assert report.book_id == book_id_of(pdf)
    assert progress[0] == (0, n) and progress[-1] == (n, n)
    book = index.store.get_book(report.book_id)
    assert book is not None
    assert (book.status, book.page_count, book.failed_pages) == ("complete", n, [])
    assert (book.title, book.source_name) == ("Essentials of Pathology", "essentials.pdf")
    assert index.store.count_pages(report.book_id) == n
    assert index.store.page_numbers(report.book_id) == set(range(1, n + 1))
    assert [b.book_id for b in index.complete_books()] == [report.book_id]

    # searchable
    assert top_pages(index, "Reed-Sternberg cells with owl-eye nucleoli")[0] == (report.book_id, 2)

    # one stored page image per page, readable
    records = all_pages(index, report.book_id, n)
    assert sorted(r.page for r in records.values()) == list(range(1, n + 1))
    keys = {r.image_key for r in records.values()}
    assert len(keys) == n
    for key in keys:
        assert index.images.exists(key)
        width, height = index.images.open(key).size
        assert width > 100 and height > 100

    # the source copy is kept under data_dir/books, byte for byte
    copy = settings.books_dir / f"{report.book_id}.pdf"
    assert copy.read_bytes() == pdf.read_bytes()


def test_adding_the_same_file_again_does_nothing(tmp_path: Path, index: PageIndex) -> None:
    pdf = write_pathology_book(tmp_path / "essentials.pdf")
    first = index_pdf(index, pdf)
    assert first.status == "indexed"
    points = index.store.count_pages()

    again = index_pdf(index, pdf)
    renamed = tmp_path / "same-content.pdf"
    renamed.write_bytes(pdf.read_bytes())
    copy = index_pdf(index, renamed)

    for report in (again, copy):
        assert (report.status, report.book_id, report.pages_indexed, report.ok) == (
            "already indexed", first.book_id, 0, True
        )
    assert index.store.count_pages() == points
    assert [b.book_id for b in index.store.list_books()] == [first.book_id]


def test_a_changed_file_with_the_same_name_replaces_the_old_book(
    tmp_path: Path, index: PageIndex, settings: IndexerSettings
) -> None:
    pdf = tmp_path / "lecture.pdf"
    pdf_factory.write_text_pdf(pdf, ["Amyloidosis deposits stain apple-green under polarised light with Congo red."] * 2)
    old = index_pdf(index, pdf)
    assert top_pages(index, "amyloid Congo red apple-green")[0][0] == old.book_id

    write_pathology_book(pdf)  # same name, new content
    new = index_pdf(index, pdf)

    assert new.status == "indexed" and new.book_id != old.book_id
    assert new.replaced == [old.book_id]
    assert index.store.get_book(old.book_id) is None
    assert index.store.count_pages(old.book_id) == 0
    assert not (settings.books_dir / f"{old.book_id}.pdf").exists()
    assert [b.book_id for b in index.store.list_books()] == [new.book_id]
    assert index.store.count_pages() == len(PATHOLOGY_PAGES)
    assert top_pages(index, "caseous necrosis cheese-like")[0] == (new.book_id, 3)
    assert all(book_id == new.book_id for book_id, _ in top_pages(index, "amyloid Congo red apple-green"))


def test_remove_book(tmp_path: Path, index: PageIndex, settings: IndexerSettings) -> None:
    kept = index_pdf(index, write_pathology_book(tmp_path / "kept.pdf", title="Kept"))
    gone = index_pdf(index, pdf_factory.write_text_pdf(tmp_path / "gone.pdf", ["Hyaline arteriolosclerosis in benign nephrosclerosis."]))
    assert gone.status == "indexed"

    assert index.remove_book(gone.book_id) is True

    assert index.store.get_book(gone.book_id) is None
    assert index.store.count_pages(gone.book_id) == 0
    assert not (settings.books_dir / f"{gone.book_id}.pdf").exists()
    assert all(book_id == kept.book_id for book_id, _ in top_pages(index, "hyaline arteriolosclerosis"))
    with pytest.raises(SearchError, match=gone.book_id):
        search_pages(index, SearchQuery(text="hyaline", books=[gone.book_id]))
    assert index.remove_book(gone.book_id) is False  # removing twice: nothing left to remove
    assert index.store.count_pages(kept.book_id) == len(PATHOLOGY_PAGES)
    assert index.store.get_book(kept.book_id).status == "complete"


# --- bad pages and bad files ----------------------------------------------------------------------


def write_pdf_with_unreadable_page(path: Path) -> Path:
    """Three topic pages whose second page cannot be loaded (its page-tree entry is null)."""
    write_pathology_book(path)
    doc = pymupdf.open(path)
    doc.select([0, 1, 2])
    broken = doc[1].xref
    pages_tree = int(doc.xref_get_key(doc.pdf_catalog(), "Pages")[1].split()[0])
    kids = doc.xref_get_key(pages_tree, "Kids")[1]
    doc.xref_set_key(pages_tree, "Kids", kids.replace(f"{broken} 0 R", "null"))
    data = doc.tobytes()
    doc.close()
    path.write_bytes(data)
    return path


def test_an_unreadable_page_is_skipped_and_reported(tmp_path: Path, index: PageIndex) -> None:
    pdf = write_pdf_with_unreadable_page(tmp_path / "damaged.pdf")

    report = index_pdf(index, pdf)

    assert report.status == "indexed" and not report.ok
    assert [error.page for error in report.page_errors] == [2]
    assert str(report.page_errors[0]).startswith("damaged.pdf: page 2: cannot load page")
    assert report.pages_indexed == 2
    book = index.store.get_book(report.book_id)
    assert (book.status, book.page_count, book.failed_pages) == ("complete", 3, [2])
    assert index.store.page_numbers(report.book_id) == {1, 3}
    assert top_pages(index, "caseous necrosis cheese-like")[0] == (report.book_id, 3)


BAD_FILES = {
    "encrypted": (pdf_factory.write_encrypted_pdf, "encrypted"),
    "truncated": (pdf_factory.write_truncated_pdf, "truncated"),
    "png": (lambda p: pdf_factory.write_not_a_pdf(p, "png"), "not a PDF file"),
    "text": (lambda p: pdf_factory.write_not_a_pdf(p, "text"), "not a PDF file"),
    "zero-pages": (pdf_factory.write_zero_page_pdf, "no pages"),
    "missing": (lambda p: p, "no such file"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_files_fail_by_name_and_lose_nothing(tmp_path: Path, index: PageIndex, settings: IndexerSettings, kind: str) -> None:
    good = index_pdf(index, write_pathology_book(tmp_path / "good.pdf"))
    assert good.status == "indexed"
    make, reason = BAD_FILES[kind]
    bad = make(tmp_path / f"bad-{kind}.pdf")

    report = index_pdf(index, bad)

    assert report.status == "failed" and not report.ok
    assert report.error.startswith(f"bad-{kind}.pdf: ")
    assert reason in report.error
    assert report.pages_indexed == 0
    # nothing written for the bad file, nothing lost of the good one
    assert [b.book_id for b in index.store.list_books()] == [good.book_id]
    assert index.store.get_book(good.book_id).status == "complete"
    assert index.store.count_pages() == len(PATHOLOGY_PAGES)
    assert sorted(p.name for p in settings.books_dir.iterdir()) == [f"{good.book_id}.pdf"]
    assert top_pages(index, "Reed-Sternberg cells")[0] == (good.book_id, 2)


# --- encoders changed: refused, then rebuilt by reindex --------------------------------------------


def test_encoder_mismatch_is_refused_until_reindex(
    tmp_path: Path, settings: IndexerSettings, text_only_encoders, visual_encoders, tiny_colqwen2_path: Path
) -> None:
    text_index = PageIndex(settings, encoders=text_only_encoders)
    pdf = write_pathology_book(tmp_path / "essentials.pdf")
    built = index_pdf(text_index, pdf)
    text_index.close()
    visual_settings = settings.model_copy(update={"page_encoder": str(tiny_colqwen2_path)})

    visual_index = PageIndex(visual_settings, encoders=visual_encoders)
    try:
        with pytest.raises(EncoderMismatchError, match="pathorag index reindex") as caught:
            search_pages(visual_index, SearchQuery(text="granuloma"))
        assert "page: index has no such channel" in str(caught.value)
        other = pdf_factory.write_text_pdf(tmp_path / "other.pdf", ["Fibrinoid necrosis of arteriolar walls."])
        with pytest.raises(EncoderMismatchError):
            index_pdf(visual_index, other)
        assert [b.book_id for b in visual_index.store.list_books()] == [built.book_id]  # nothing was added
    finally:
        visual_index.close()

    reports = reindex(visual_settings)

    assert [(r.status, r.book_id, r.pages_indexed) for r in reports] == [("indexed", built.book_id, len(PATHOLOGY_PAGES))]
    assert not (visual_settings.data_dir / "reindex-plan.json").exists()
    index = PageIndex(visual_settings, encoders=visual_encoders)
    try:
        assert set(index.store.get_meta()["encoders"]) == {"text", "bm25", "page"}
        book = index.store.get_book(built.book_id)
        assert (book.status, book.source_name, book.title) == ("complete", "essentials.pdf", "Essentials of Pathology")
        assert index.store.count_pages() == len(PATHOLOGY_PAGES)
        text_hits = search_pages(index, SearchQuery(text="Reed-Sternberg cells owl-eye nucleoli"))
        assert (text_hits[0].book_id, text_hits[0].page) == (built.book_id, 2)
        assert "page" in text_hits[0].channel_scores
        page_image = index.images.open(text_hits[0].image_key)
        image_hits = search_pages(index, SearchQuery(image=page_image, top_k=3))
        assert len(image_hits) == 3
        assert all(set(hit.channel_scores) == {"image"} and hit.book_id == built.book_id for hit in image_hits)
    finally:
        index.close()


# --- killed mid-book, then resumed -------------------------------------------------------------------

# Runs `pathorag index add` and SIGKILLs itself when the third batch of pages is about to be encoded,
# i.e. after two batches were upserted and flushed.
KILLING_DRIVER = textwrap.dedent(
    """
    import os, signal, sys

    import indexer.jobs as jobs

    encode_pages, batches = jobs.encode_pages, []

    def encode_then_die(*args, **kwargs):
        batches.append(1)
        if len(batches) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return encode_pages(*args, **kwargs)

    jobs.encode_pages = encode_then_die
    from pathorag.cli import app

    app(["index", "add", sys.argv[1]])
    """
)
LONG_BOOK_PAGES = 30


def test_a_killed_run_resumes_without_duplicates_and_is_never_half_visible(
    tmp_path: Path, settings: IndexerSettings, text_only_encoders
) -> None:
    pdf = write_case_book(tmp_path / "long.pdf", LONG_BOOK_PAGES)
    driver = tmp_path / "killing_driver.py"
    driver.write_text(KILLING_DRIVER)
    env = os.environ | {
        "PATHORAG_DATA_DIR": str(settings.data_dir),
        "PATHORAG_PAGE_ENCODER": "none",
        "PATHORAG_OCR": "false",
        "PATHORAG_RENDER_DPI": str(settings.render_dpi),
    }

    killed = subprocess.run(
        [sys.executable, str(driver), str(pdf)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    book_id = book_id_of(pdf)
    index = PageIndex(settings, encoders=text_only_encoders)
    try:
        # between the kill and the resume: some pages durable, the book not searchable
        book = index.store.get_book(book_id)
        assert book is not None and book.status == "indexing"
        stored = index.store.count_pages(book_id)
        assert stored == 2 * PAGES_PER_BATCH and 0 < stored < LONG_BOOK_PAGES
        assert index.store.page_numbers(book_id) == set(range(1, stored + 1))
        assert index.complete_books() == []
        assert search_pages(index, SearchQuery(text="Reed-Sternberg cells")) == []
        assert search_pages(index, SearchQuery(text="Reed-Sternberg cells", books=[book_id])) == []

        resumed = index_pdf(index, pdf)

        assert (resumed.status, resumed.ok, resumed.book_id) == ("indexed", True, book_id)
        assert resumed.pages_indexed == LONG_BOOK_PAGES - stored  # only the missing pages were done
        assert index.store.count_pages() == LONG_BOOK_PAGES  # every page exactly once
        assert index.store.page_numbers(book_id) == set(range(1, LONG_BOOK_PAGES + 1))
        records = all_pages(index, book_id, LONG_BOOK_PAGES)
        assert sorted(r.page for r in records.values()) == list(range(1, LONG_BOOK_PAGES + 1))
        assert all(r.text.startswith(f"Case {r.page}.") for r in records.values())
        book = index.store.get_book(book_id)
        assert (book.status, book.page_count, book.source_name) == ("complete", LONG_BOOK_PAGES, "long.pdf")
        hits = search_pages(index, SearchQuery(text="Reed-Sternberg cells owl-eye nucleoli", top_k=LONG_BOOK_PAGES))
        assert {hit.page for hit in hits[:5]} == {n for n in range(1, LONG_BOOK_PAGES + 1) if n % 6 == 1}
    finally:
        index.close()
