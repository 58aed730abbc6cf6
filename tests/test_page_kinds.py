"""Front matter, contents and index pages told from body pages by their layout, and kept out of search unless asked."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from indexer.jobs import index_pdf
from indexer.page_kinds import Row, page_kind
from indexer.pages import extract_pages, open_pdf
from indexer.settings import IndexerSettings
from rag.page_index import PageIndex
from rag.search import SearchQuery, search_pages

CONTENTS = [("Granulomatous inflammation", 2), ("Caseous necrosis", 3), ("Classification of bacilli", 4),
            ("Repair and fibrosis", 6), ("Tumour grading", 9), ("Staging", 11)]
INDEX = ["Abscess, 3, 7", "Bacillus anthracis, 4", "Caseation, 3", "Epithelioid cells, 2",
         "Fibrosis, 6, 8", "Giant cells, Langhans, 2", "Granuloma, 2, 3, 5", "Necrosis, caseous, 3, 10",
         "Sarcoidosis, 2", "Tubercle, 3, 12"]
BODY = [
    "A granuloma is a compact aggregate of epithelioid macrophages rimmed by lymphocytes; Langhans giant "
    "cells have their nuclei in a horseshoe. About 5 to 10 percent of cases relapse after 2 years.",
    "Caseous necrosis is the cheese-like necrosis of the tuberculous granuloma, seen in about 90 percent of "
    "cases, and it calcifies after 3 or more years.",
]
# A classification table whose rows end in years (and one decreasing page reference): body, not a listing.
TABLE = ["Genus 1. Bacillus Cohn, 1872.", "Genus 2. Clostridium Prazmowski, 1880.", "Genus 3. Mycobacterium Lehmann, 1896.",
         "Genus 4. Corynebacterium Lehmann, 1896.", "Genus 5. Streptococcus Rosenbach, 1884.", "Genus 6. Neisseria Trevisan, 1885.",
         "Genus 7. Treponema Schaudinn, 1905.", "Genus 8. Actinomyces Harz, 1877.", "see page 12", "and page 4"]


def _write_book(path: Path) -> Path:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 200), "Granulomas and Necrosis: a Short Atlas of Granuloma Pathology", fontsize=14)
    page = doc.new_page()
    page.insert_text((72, 60), "Contents", fontsize=16)
    for i, (title, number) in enumerate(CONTENTS):  # title and page number: two text lines on one baseline
        page.insert_text((72, 100 + 24 * i), title, fontsize=11)
        page.insert_text((500, 100 + 24 * i), str(number), fontsize=11)
    for text in BODY:
        doc.new_page().insert_textbox(pymupdf.Rect(72, 72, 520, 400), text, fontsize=11)
    page = doc.new_page()
    for i, row in enumerate(TABLE):
        page.insert_text((72, 80 + 20 * i), row, fontsize=10)
    page = doc.new_page()
    page.insert_text((72, 60), "Index", fontsize=16)
    for i, row in enumerate(INDEX):
        page.insert_text((72, 100 + 18 * i), row, fontsize=9)
    doc.save(path)
    return path


def test_listing_pages_are_told_from_body_pages_by_layout(tmp_path: Path) -> None:
    settings = IndexerSettings(_env_file=None, data_dir=tmp_path / "data", ocr=False, render_dpi=72)
    with open_pdf(_write_book(tmp_path / "book.pdf")) as doc:
        kinds = [page.kind for page in extract_pages(doc, settings)]
    assert kinds == ["front", "contents", "body", "body", "body", "index"]


def test_rows_need_rising_page_numbers_to_be_contents() -> None:
    def rows(texts: list[str]) -> list[Row]:
        return [Row(text, 72, 100 + 20 * i, 110 + 20 * i) for i, text in enumerate(texts)]

    rising = [f"Chapter {i}" for i in range(1, 7)]
    assert page_kind(rows([f"{title} {10 * i}" for i, title in enumerate(rising, start=1)])) == "contents"
    assert page_kind(rows([f"{title} {60 - 10 * i}" for i, title in enumerate(rising, start=1)])) == "body"
    assert page_kind(rows(["Abscess, 4"] * 4)) == "body"  # too few rows for an index
    # a title and its number as separate text lines on one baseline are one row
    split = [Row(title, 72, 100 + 20 * i, 110 + 20 * i) for i, title in enumerate(rising)]
    split += [Row(str(2 * i + 1), 500, 100.5 + 20 * i, 109.5 + 20 * i) for i in range(len(rising))]
    assert page_kind(split) == "contents"


@pytest.mark.slow
def test_search_leaves_front_matter_and_listings_out_unless_asked(tmp_path: Path, text_only_encoders) -> None:
    settings = IndexerSettings(_env_file=None, data_dir=tmp_path / "data", page_encoder="none", ocr=False, render_dpi=72)
    index = PageIndex(settings, encoders=text_only_encoders)
    try:
        assert index_pdf(index, _write_book(tmp_path / "book.pdf")).ok
        query = "granuloma caseation necrosis epithelioid giant cells"
        default = search_pages(index, SearchQuery(text=query))
        assert {hit.page for hit in default} <= {3, 4, 5}
        assert {hit.page_kind for hit in default} == {"body"}
        every = search_pages(index, SearchQuery(text=query, all_pages=True))
        kinds = {hit.page: hit.page_kind for hit in every}
        assert (kinds[1], kinds[2], kinds[3], kinds[6]) == ("front", "contents", "body", "index")
    finally:
        index.close()
