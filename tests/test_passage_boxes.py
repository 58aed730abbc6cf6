"""Passage boxes: a known sentence, printed in red among black text, is located by the boxes the
indexer's stored words give, on the stored page image: on a text page, a rotated one and a scanned
(OCR) one; a passage that is not on the page gets no boxes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pymupdf
import pytest

from indexer.jobs import index_pdf
from indexer.settings import IndexerSettings
from rag.page_index import PageIndex
from rag.page_words import PageWords, find_passage, passage_boxes

RED = (0.85, 0.0, 0.0)
BEFORE = [
    "Inflammation is the response of vascularised tissue to injury.",
    "Acute inflammation is of short duration and is marked by oedema.",
    "Neutrophils are the first leucocytes to arrive at the site.",
]
# The sentence the tests look for, set over two lines, its first line ending in a hyphenated word.
SENTENCE_LINES = ["Chronic granulomatous inflam-", "mation is typified by epithelioid macrophages."]
SENTENCE = "Chronic granulomatous inflammation is typified by epithelioid macrophages."
AFTER = [
    "Caseous necrosis is seen in the granulomas of tuberculosis.",
    "Healing is by regeneration or by fibrous scarring of the tissue.",
]


def _draw(page: pymupdf.Page, size: float) -> None:
    y = 90.0
    for text, color in [(t, (0, 0, 0)) for t in BEFORE] + [(t, RED) for t in SENTENCE_LINES] + [(t, (0, 0, 0)) for t in AFTER]:
        page.insert_text((60, y), text, fontsize=size, fontname="helv", color=color)
        y += size * 1.8


def write_sentence_pdf(path: Path, rotation: int = 0) -> Path:
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    _draw(page, 12)
    page.set_rotation(rotation)
    doc.save(path)
    return path


def write_scanned_sentence_pdf(path: Path) -> Path:
    """The same lines as a picture only (no text layer): only OCR can find the words."""
    scratch = pymupdf.open()
    _draw(scratch.new_page(width=595, height=842), 16)
    pixmap = scratch[0].get_pixmap(dpi=200, alpha=False)
    doc = pymupdf.open()
    doc.new_page(width=595, height=842).insert_image(pymupdf.Rect(0, 0, 595, 842), pixmap=pixmap)
    doc.save(path)
    return path


def _index(tmp_path: Path, text_only_encoders, pdf: Path, ocr: bool) -> tuple[PageIndex, PageWords, np.ndarray]:
    settings = IndexerSettings(_env_file=None, data_dir=tmp_path / "data", page_encoder="none", ocr=ocr, render_dpi=100)
    index = PageIndex(settings, encoders=text_only_encoders)
    report = index_pdf(index, pdf)
    assert report.ok, report
    record = index.page(report.book_id, 1)
    assert record.words_key and record.ocr == ocr
    return index, index.words.get(record.words_key), np.asarray(index.images.open(record.image_key).convert("RGB"))


def _mask(boxes, shape, pad: int = 2) -> np.ndarray:
    height, width = shape[:2]
    mask = np.zeros((height, width), dtype=bool)
    for left, top, right, bottom in boxes:
        mask[max(0, int(top * height) - pad) : int(bottom * height) + pad + 1, max(0, int(left * width) - pad) : int(right * width) + pad + 1] = True
    return mask


def _assert_boxes_cover_the_red_sentence(boxes, pixels: np.ndarray) -> None:
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 110) & (pixels[..., 2] < 110)
    black = pixels.max(axis=-1) < 90
    assert red.sum() > 200, "the sentence is not on the rendered page"
    inside = _mask(boxes, pixels.shape)
    assert len(boxes) == 2  # one box per line the sentence spans
    assert red[inside].sum() / red.sum() > 0.97  # the whole sentence is marked ...
    assert black[inside].sum() < 0.03 * black.sum()  # ... and not the lines around it
    assert red[inside].sum() / inside.sum() > 0.05  # boxes hug the words, not a band across the page


@pytest.mark.parametrize("rotation", [0, 90])
def test_boxes_of_a_sentence_land_on_its_pixels(tmp_path, text_only_encoders, rotation) -> None:
    index, words, pixels = _index(tmp_path, text_only_encoders, write_sentence_pdf(tmp_path / "book.pdf", rotation), ocr=False)
    try:
        record = index.page(index.complete_books()[0].book_id, 1)
        boxes = passage_boxes(words, SENTENCE)  # the hyphenated word mended, as a quote or snippet gives it
        _assert_boxes_cover_the_red_sentence(boxes, pixels)
        assert passage_boxes(words, " ".join(SENTENCE_LINES)) == boxes  # or not
        assert index.passage_boxes(record.words_key, SENTENCE) == boxes
        assert passage_boxes(words, "Hodgkin lymphoma shows Reed-Sternberg cells in a mixed infiltrate.") == []
        assert index.passage_boxes("", SENTENCE) == [] and index.passage_boxes("0" * 64, SENTENCE) == []
    finally:
        index.close()


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="Tesseract is not installed")
def test_boxes_of_a_sentence_on_a_scanned_page_land_on_its_pixels(tmp_path, text_only_encoders) -> None:
    index, words, pixels = _index(tmp_path, text_only_encoders, write_scanned_sentence_pdf(tmp_path / "scan.pdf"), ocr=True)
    try:
        _assert_boxes_cover_the_red_sentence(passage_boxes(words, SENTENCE), pixels)
    finally:
        index.close()


def test_a_quote_is_found_verbatim_or_not_at_all() -> None:
    text = "Caseous necrosis is seen in tuberculosis. Chronic granulomatous inflammation is typified by epithelioid macrophages, and giant cells."
    # A model's quote with another case, dropped punctuation and one slipped word still names the page's words.
    assert find_passage(text, "chronic granulomatous inflammation is typified by epithelioid cells macrophages") == (
        "Chronic granulomatous inflammation is typified by epithelioid macrophages"
    )
    assert find_passage(text, "Reed-Sternberg cells are binucleate with owl-eye nucleoli.") == ""
    assert find_passage(text, "") == ""
