"""PDF -> pages and the page-image store, on PDFs generated with real PyMuPDF."""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import pytest
from PIL import Image

from indexer import pages as pages_module
from indexer.pages import BadPdfError, extract_pages, open_pdf, pdf_metadata
from indexer.settings import IndexerSettings
from rag.page_images import PageImageStore
from tests import pdf_factory
from tests.pdf_factory import PageSpec

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
LOREM = (
    "The liver shows fatty change with large droplets of fat displacing the nuclei of the hepatocytes. "
    "Portal tracts are mildly inflamed, and there is no fibrosis of the lobules or of the septa. "
)


@pytest.fixture
def settings(tmp_path: Path) -> IndexerSettings:
    return IndexerSettings(_env_file=None, data_dir=tmp_path / "data", ocr=False)


@pytest.fixture
def fresh_tesseract_lookup():
    pages_module._tessdata.cache_clear()
    yield
    pages_module._tessdata.cache_clear()


def extract(path: Path, settings: IndexerSettings, pages=None) -> list:
    return list(extract_pages(open_pdf(path), settings, pages))


# --- text, labels, sections, captions ---------------------------------------------------------


def test_text_is_cleaned_and_dehyphenated(tmp_path, settings):
    pdf = pdf_factory.write_text_pdf(tmp_path / "a.pdf", ["Chronic inflam-\nmation   of the\tgall bladder."])
    [page] = extract(pdf, settings)
    assert page.page == 1
    assert page.text == "Chronic inflammation of the gall bladder."
    assert page.ocr is False


def test_labels_come_from_the_pdf_or_the_page_number(tmp_path, settings):
    labels = [{"startpage": 0, "style": "r", "firstpagenum": 1}, {"startpage": 2, "style": "D", "firstpagenum": 1}]
    labelled = pdf_factory.write_text_pdf(tmp_path / "labelled.pdf", [LOREM] * 3, labels=labels)
    plain = pdf_factory.write_text_pdf(tmp_path / "plain.pdf", [LOREM] * 2)
    assert [page.label for page in extract(labelled, settings)] == ["i", "ii", "1"]
    assert [page.label for page in extract(plain, settings)] == ["1", "2"]


def test_section_path_follows_the_outline(tmp_path, settings):
    toc = [(1, "Part One: Liver", 1), (2, "Cirrhosis", 2), (1, "Part Two: Kidney", 3)]
    pdf = pdf_factory.write_text_pdf(tmp_path / "toc.pdf", [LOREM] * 4, toc=toc)
    paths = [page.section_path for page in extract(pdf, settings)]
    assert paths == [["Part One: Liver"], ["Part One: Liver", "Cirrhosis"], ["Part Two: Kidney"], ["Part Two: Kidney"]]


def test_section_path_falls_back_to_headings_carried_forward(tmp_path, settings):
    specs = [
        PageSpec(heading="CHAPTER I THE LIVER", text=LOREM),
        PageSpec(heading="Cirrhosis", text=LOREM),
        PageSpec(text=LOREM),
        PageSpec(heading="CHAPTER II THE KIDNEY", text=LOREM),
    ]
    pdf = pdf_factory.write_text_pdf(tmp_path / "headings.pdf", specs)
    extracted = extract(pdf, settings)
    assert [page.headings for page in extracted] == [["CHAPTER I THE LIVER"], ["Cirrhosis"], [], ["CHAPTER II THE KIDNEY"]]
    assert extracted[2].section_path == ["CHAPTER I THE LIVER", "Cirrhosis"]
    assert extracted[3].section_path == ["CHAPTER II THE KIDNEY"]
    # Asking for page 3 alone still knows the headings of the pages before it.
    [third] = extract(pdf, settings, pages=[3])
    assert third.section_path == ["CHAPTER I THE LIVER", "Cirrhosis"]


def test_captions_are_figure_blocks_not_references_in_the_text(tmp_path, settings):
    specs = [
        PageSpec(caption="Fig. 12. Fatty liver, low power.", text="Figure 12 shows the fatty liver. " + LOREM),
        PageSpec(caption="PLATE IV: Amyloid kidney.", text=LOREM),
    ]
    pdf = pdf_factory.write_text_pdf(tmp_path / "figures.pdf", specs)
    first, second = extract(pdf, settings)
    assert first.captions == ["Fig. 12. Fatty liver, low power."]
    assert second.captions == ["PLATE IV: Amyloid kidney."]
    assert "Fatty liver, low power." in first.text  # captions stay part of the page text


def test_page_numbers_out_of_range_are_refused(tmp_path, settings):
    pdf = pdf_factory.write_text_pdf(tmp_path / "two.pdf", [LOREM] * 2)
    with pytest.raises(ValueError, match="1..2"):
        extract(pdf, settings, pages=[3])


def test_metadata_gives_a_default_title(tmp_path):
    titled = pdf_factory.write_text_pdf(tmp_path / "t.pdf", [LOREM], metadata={"title": " Liver ", "author": "Osler"})
    untitled = pdf_factory.write_text_pdf(tmp_path / "notes_on_kidney.pdf", [LOREM])
    assert pdf_metadata(open_pdf(titled)) == {"title": "Liver", "author": "Osler"}
    assert pdf_metadata(open_pdf(untitled)) == {"title": "notes_on_kidney", "author": ""}


# --- rendering --------------------------------------------------------------------------------


def test_a4_page_renders_at_the_configured_dpi(tmp_path, settings):
    [page] = extract(pdf_factory.write_text_pdf(tmp_path / "a4.pdf", [LOREM]), settings)
    assert page.image.mode == "RGB"
    assert page.image.size == (1190, 1684)  # 595 x 842 pt at 144 dpi


def test_huge_page_is_scaled_down_to_the_pixel_cap(tmp_path, settings):
    [page] = extract(pdf_factory.write_huge_page_pdf(tmp_path / "huge.pdf"), settings)
    width, height = page.image.size
    assert width * height <= settings.max_page_pixels
    assert width * height > 0.95 * settings.max_page_pixels
    assert "enormous wall chart" in page.text


def test_page_failure_names_file_page_and_reason(tmp_path, settings, monkeypatch):
    def broken_render(*args):
        raise RuntimeError("code=2: broken content stream")

    monkeypatch.setattr(pages_module, "render_page", broken_render)
    pdf = pdf_factory.write_text_pdf(tmp_path / "book.pdf", [LOREM] * 2)
    with pytest.raises(BadPdfError) as caught:
        extract(pdf, settings, pages=[2])
    assert (caught.value.path, caught.value.page) == (pdf, 2)
    assert str(caught.value) == "book.pdf: page 2: cannot render: code=2: broken content stream"


# --- OCR --------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="Tesseract is not installed (apt install tesseract-ocr)")
def test_ocr_reads_an_image_only_page(tmp_path, settings, fresh_tesseract_lookup):
    pdf = pdf_factory.write_image_only_pdf(tmp_path / "scan.pdf", ["Amyloidosis of the spleen shows sago grains."])
    [page] = extract(pdf, settings.model_copy(update={"ocr": True}))
    assert page.ocr is True
    assert "Amyloidosis of the spleen shows sago grains" in page.text


def test_missing_tesseract_warns_once_and_goes_on(tmp_path, settings, monkeypatch, caplog, fresh_tesseract_lookup):
    monkeypatch.setattr(pages_module.shutil, "which", lambda name: None)
    monkeypatch.delenv("TESSDATA_PREFIX", raising=False)
    pdf = pdf_factory.write_image_only_pdf(tmp_path / "scan.pdf", ["Sago spleen.", "Lardaceous liver."])
    ocr_settings = settings.model_copy(update={"ocr": True})
    with caplog.at_level(logging.WARNING, logger="indexer.pages"):
        extracted = extract(pdf, ocr_settings) + extract(pdf, ocr_settings)
    assert [page.ocr for page in extracted] == [False] * 4
    assert len([record for record in caplog.records if "Tesseract not found" in record.message]) == 1


# --- bad files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: path, "file not found"),
        (pdf_factory.write_not_a_pdf, "not a PDF file (it looks like a PNG image)"),
        (lambda path: pdf_factory.write_not_a_pdf(path, kind="text"), "not a PDF file (no %PDF header)"),
        (pdf_factory.write_truncated_pdf, "truncated PDF"),
        (pdf_factory.write_encrypted_pdf, "encrypted or password-protected PDF"),
        (pdf_factory.write_zero_page_pdf, "PDF has no pages"),
    ],
    ids=["missing", "png", "text", "truncated", "encrypted", "zero-pages"],
)
def test_bad_files_are_refused_with_the_reason(tmp_path, make, reason):
    path = tmp_path / "book.pdf"
    make(path)
    with pytest.raises(BadPdfError) as caught:
        open_pdf(path)
    assert (caught.value.path, caught.value.page) == (path, None)
    assert caught.value.reason.startswith(reason)
    assert str(caught.value).startswith(f"book.pdf: {reason}")


# --- real corpus ------------------------------------------------------------------------------


@pytest.mark.skipif(not CORPORA.is_dir(), reason="development corpus not present (../shared/corpora)")
def test_real_textbook_page(settings):
    doc = open_pdf(CORPORA / "manual_of_surgery_dev_haystack.pdf")
    [page] = extract_pages(doc, settings, pages=[15])
    assert page.label == "15"
    assert page.section_path[0] == "CHAPTER I REPAIR"
    assert [caption[:40] for caption in page.captions] == ["Fig. 1.—Ulcer of back of Hand covered by"]
    assert "skin-grafting" in page.text


# --- page-image store -------------------------------------------------------------------------


def _picture(colour: tuple[int, int, int], size: tuple[int, int] = (300, 400)) -> Image.Image:
    image = Image.new("RGB", size, colour)
    image.paste((255, 255, 255), (20, 20, 120, 60))
    return image


def test_store_round_trip(tmp_path):
    store = PageImageStore(tmp_path)
    key = store.put(_picture((200, 80, 120)))
    assert store.exists(key)
    assert store.path(key) == tmp_path / key[:2] / key[2:4] / f"{key}.webp"
    loaded = store.open(key)
    assert loaded.size == (300, 400)
    assert max(abs(a - b) for a, b in zip(loaded.getpixel((200, 300)), (200, 80, 120))) < 8


def test_store_put_is_idempotent_and_content_addressed(tmp_path):
    store = PageImageStore(tmp_path)
    first = store.put(_picture((10, 120, 200)))
    mtime = store.path(first).stat().st_mtime_ns
    assert store.put(_picture((10, 120, 200))) == first
    assert store.path(first).stat().st_mtime_ns == mtime
    assert store.put(_picture((200, 120, 10))) != first
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == sorted(
        f"{key}.webp" for key in {first, store.put(_picture((200, 120, 10)))}
    )  # no temporary files left behind


def test_store_thumbnail_and_delete(tmp_path):
    store = PageImageStore(tmp_path)
    key = store.put(_picture((90, 90, 90), size=(600, 800)))
    data = store.thumbnail(key, 200)
    assert Image.open(io.BytesIO(data)).size == (150, 200)
    assert store.thumbnail(key, 200) == data  # served from the disk cache
    store.delete(key)
    assert not store.exists(key)
    assert not [path for path in tmp_path.rglob("*.webp")]
    with pytest.raises(KeyError):
        store.open(key)
    with pytest.raises(KeyError):
        store.thumbnail(key, 200)


@pytest.mark.parametrize("key", ["../../etc/passwd", "ab/../../cd", "A" * 64, "a" * 63, "a" * 64 + "/x", "", "g" * 64])
def test_store_rejects_keys_that_are_not_hex_digests(tmp_path, key):
    store = PageImageStore(tmp_path)
    for operation in (store.path, store.exists, store.open, store.delete):
        with pytest.raises(ValueError, match="invalid page image key"):
            operation(key)
    with pytest.raises(ValueError, match="invalid page image key"):
        store.thumbnail(key, 128)
