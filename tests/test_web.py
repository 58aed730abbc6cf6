"""The web page at `/`, driven by headless Chromium (Playwright) against a real server on loopback (evidence-only, and once with a scripted streaming model).

Playwright never downloads a browser here: it drives Debian's /usr/bin/chromium, and the tests skip when it is absent.
Screenshots of the main states go to test-artifacts/web/ (gitignored).
"""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from indexer.jobs import BookMeta, index_pdf
from tests import browser as browser_support
from rag.page_index import PageIndex
from tests.conftest import write_pathology_book
from tests.test_server import server_settings, start_server

pytestmark = pytest.mark.slow

ARTIFACTS = browser_support.ARTIFACTS / "web"
SLOW_MS = 120_000

sync_api = browser_support.playwright_api()
expect = sync_api.expect


@pytest.fixture(scope="module")
def web_server(tmp_path_factory, text_only_encoders):
    root = tmp_path_factory.mktemp("web")
    settings = server_settings(root / "data")
    index = PageIndex(settings, encoders=text_only_encoders)
    report = index_pdf(index, write_pathology_book(root / "essentials.pdf"), BookMeta(organ_systems=["general"]))
    assert report.ok
    url, stop = start_server(settings, index)
    yield url, root
    stop()
    index.close()


@pytest.fixture(scope="module")
def browser():
    with browser_support.chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def enter_key(page, key: str) -> None:
    page.get_by_label("API key (kept in this tab only)").fill(key)
    page.get_by_role("button", name="Use key").click()


def png_file(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), (200, 120, 180)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def test_page_is_served_without_a_key(web_server):
    url, _ = web_server
    reply = httpx.get(url + "/")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    assert "Decision support, not a diagnosis" in reply.text
    for asset, kind in (("/static/app.js", "javascript"), ("/static/app.css", "text/css")):
        served = httpx.get(url + asset)
        assert served.status_code == 200 and kind in served.headers["content-type"]
    assert httpx.get(url + "/static/..%2Fapp.py").status_code == 404
    assert httpx.get(url + "/v1/books").status_code == 401  # the API still needs a key


def test_ask_with_image_streams_progress_and_cites_pages(web_server, page, tmp_path):
    url, _ = web_server
    page.goto(url + "/")
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    expect(page.get_by_text("Decision support, not a diagnosis")).to_be_visible()
    expect(page.locator("#key-status")).to_contain_text("No API key")
    shot(page, "01-no-key")

    enter_key(page, "user-key")
    expect(page.locator("#key-status")).to_contain_text("Key accepted. 1 book indexed.")
    expect(page.locator("#book-filter input[type=checkbox]")).to_have_count(1)
    assert page.evaluate("sessionStorage.getItem('pathorag.apiKey')") == "user-key"
    assert page.evaluate("localStorage.length") == 0

    page.get_by_label("Question", exact=True).fill("Which cells are characteristic of Hodgkin lymphoma?")
    for text in ("Reed-Sternberg cells", "Langhans giant cells", "Keratin pearls"):
        page.get_by_role("button", name="Add option").click()
        page.locator("#choices li input").last.fill(text)
    page.get_by_role("button", name="Remove option C").click()
    expect(page.locator("#choices li")).to_have_count(2)
    page.locator("#images").set_input_files(str(png_file(tmp_path / "slide.png")))
    expect(page.get_by_alt_text("Preview of slide.png")).to_be_visible()
    shot(page, "02-question")

    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-box")).to_be_visible(timeout=SLOW_MS)
    steps = page.locator("#progress-steps li")
    expect(steps.first).to_contain_text("route:")
    expect(page.locator("#progress-steps li.step-search").first).to_contain_text(" hit")
    expect(page.locator("#answer-box")).to_contain_text("Evidence only")
    expect(page.locator("#answer-box")).to_contain_text("No language model wrote this")
    expect(page.locator("#history li")).to_have_count(1)
    citations = page.locator("#citations button.citation")
    assert citations.count() >= 1
    page.wait_for_function(
        "() => { const i = document.querySelector('#citations img'); return i && i.src.startsWith('blob:') && i.naturalWidth > 0; }",
        timeout=30_000,
    )
    assert page.evaluate("document.querySelector('#citations img').naturalWidth") <= 256
    shot(page, "03-answer")

    labelled = page.locator("#citations button.citation", has_text="p. 102")
    target = labelled.first if labelled.count() else citations.first
    target.click()
    dialog = page.locator("#page-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#page-dialog-title")).to_contain_text("p. ")
    page.wait_for_function(
        "() => { const i = document.getElementById('page-dialog-img'); return i.src.startsWith('blob:') && i.naturalWidth > 256; }",
        timeout=30_000,
    )
    shot(page, "04-page-dialog")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    page.get_by_label("Question", exact=True).fill("What is caseous necrosis?")
    page.get_by_label("Question", exact=True).press("Control+Enter")
    expect(page.locator("#history li")).to_have_count(2, timeout=SLOW_MS)
    expect(page.locator("#thread-info")).to_contain_text("2 so far")


MARKS_MATCH_BOXES = """(selector) => {
  // Each mark's place over its image, as fractions of the image, next to the citation box it draws.
  const frame = document.querySelector(selector);
  const image = frame.querySelector('img').getBoundingClientRect();
  return [...frame.querySelectorAll('.passage-mark')].map((mark) => {
    const r = mark.getBoundingClientRect();
    return [(r.left - image.left) / image.width, (r.top - image.top) / image.height,
            (r.right - image.left) / image.width, (r.bottom - image.top) / image.height];
  });
}"""


def ask_with_key(page, url: str, question: str, images: list[Path] = ()) -> None:
    """Open the page, enter the user key, ask `question` (with `images`) and wait for the answer."""
    page.goto(url + "/")
    enter_key(page, "user-key")
    expect(page.locator("#key-status")).to_contain_text("Key accepted")
    page.get_by_label("Question", exact=True).fill(question)
    if images:
        page.locator("#images").set_input_files([str(image) for image in images])
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#answer-box")).to_be_visible(timeout=SLOW_MS)


def test_the_cited_passage_is_marked_on_the_thumbnail_and_the_page(web_server, page):
    url, _ = web_server
    ask_with_key(page, url, "Which cells are characteristic of Hodgkin lymphoma?")
    first = page.locator("#citations button.citation").first
    page.wait_for_function("() => { const i = document.querySelector('#citations img'); return i && i.naturalWidth > 0; }")
    expect(first.locator(".passage-mark").first).to_be_attached()
    thumb_marks = page.evaluate(MARKS_MATCH_BOXES, "#citations button.citation .page-frame")

    first.click()
    page.wait_for_function("() => { const i = document.getElementById('page-dialog-img'); return i.naturalWidth > 256; }", timeout=30_000)
    mark = page.locator("#page-full .passage-mark").first
    expect(mark).to_be_visible()
    page_marks = page.evaluate(MARKS_MATCH_BOXES, "#page-full .page-frame")
    meta = page.locator("#page-dialog-meta").inner_text()
    assert "Reed-Sternberg" in meta  # the passage quoted above the page
    # The marks sit where the citation's boxes say, on the thumbnail and on the full page alike.
    assert len(page_marks) == len(thumb_marks) >= 1
    for thumb, full in zip(thumb_marks, page_marks):
        assert all(abs(a - b) < 0.02 for a, b in zip(thumb, full)), (thumb, full)
        assert 0 <= full[0] < full[2] <= 1 and 0 <= full[1] < full[3] <= 1
    # ... over the passage's words: the marked strip of the page image is dark text, not margin.
    pixels = page.locator("#page-full .page-frame").screenshot()
    image = Image.open(io.BytesIO(pixels)).convert("L")
    left, top, right, bottom = page_marks[0]
    strip = image.crop((int(left * image.width), int(top * image.height), int(right * image.width), int(bottom * image.height)))
    assert np.asarray(strip).min() < 100  # text under the highlighter
    box = mark.bounding_box()
    viewport = page.locator("#page-full").bounding_box()
    assert viewport["y"] <= box["y"] and box["y"] + box["height"] <= viewport["y"] + viewport["height"]  # scrolled into view
    shot(page, "05-passage-marked")


def test_wrong_key_and_server_errors_are_readable(web_server, page):
    url, _ = web_server
    page.goto(url + "/")
    enter_key(page, "not-the-key")
    expect(page.locator("#key-status")).to_contain_text("The API key was not accepted (401)")
    page.get_by_label("Question", exact=True).fill("What is a granuloma?")
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#ask-error")).to_contain_text("not accepted (401)")
    shot(page, "05-wrong-key")

    enter_key(page, "user-key")
    expect(page.locator("#key-status")).to_contain_text("Key accepted")
    page.get_by_label("Question", exact=True).fill("   ")  # the page refuses it before sending
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#ask-error")).to_contain_text("Write a question first")
    # a 422 from the server: an image the server cannot decode
    page.get_by_label("Question", exact=True).fill("What is this?")
    page.locator("#images").set_input_files(files=[{"name": "bad.png", "mimeType": "image/png", "buffer": b"not a png"}])
    page.get_by_role("button", name="Ask", exact=True).click()
    expect(page.locator("#ask-error")).to_contain_text("(422)", timeout=SLOW_MS)
    # client-side size check: a 6 MB image never leaves the page
    page.locator("#images").set_input_files(files=[{"name": "huge.png", "mimeType": "image/png", "buffer": b"\0" * 6_000_000}])
    expect(page.locator("#ask-error")).to_contain_text("the limit is 5 MB")


def test_admin_uploads_a_pdf_and_removes_it(web_server, page):
    url, root = web_server
    pdf = write_pathology_book(root / "third.pdf", title="Third Pathology").read_bytes()
    pdf = pdf.replace(b"Third Pathology", b"Third Pathologx", 1)  # same content would be the same book
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(url + "/")
    enter_key(page, "admin-key")
    expect(page.locator("#key-status")).to_contain_text("Key accepted")
    page.locator("#books-panel summary").click()
    page.locator("#pdf").set_input_files(files=[{"name": "third.pdf", "mimeType": "application/pdf", "buffer": pdf}])
    page.get_by_label("Title (optional)").fill("Web Upload Book")
    page.get_by_role("button", name="Upload and index").click()
    expect(page.locator("#upload-status")).to_contain_text("Indexed third.pdf", timeout=SLOW_MS)
    row = page.locator("#books-table tbody tr", has_text="Web Upload Book")
    expect(row).to_contain_text("complete")
    expect(page.locator("#book-filter")).to_contain_text("Web Upload Book")
    shot(page, "06-books")
    row.get_by_role("button", name="Remove Web Upload Book").click()
    expect(page.locator("#upload-status")).to_contain_text('Removed "Web Upload Book"')
    expect(page.locator("#books-table tbody tr", has_text="Web Upload Book")).to_have_count(0)


def test_answer_text_appears_as_the_model_writes_it(web_server, page, tmp_path, text_only_encoders):
    # The same book behind a server with a (scripted, streaming) model: the answer's text arrives as
    # answer_token events, shown as a live draft, never as progress steps; the checked result replaces it.
    from tests.scripted_vlm import ScriptedVLM
    from tests.test_agent import answer, inspection, plan

    _, root = web_server
    vlm = ScriptedVLM()
    text = "Reed-Sternberg cells mark Hodgkin lymphoma [P1]."
    vlm.script(plan("Reed-Sternberg cells"), inspection(), answer(text))
    settings = server_settings(tmp_path / "data").model_copy(update={"vlm_base_url": vlm.base_url, "vlm_model": vlm.model})
    index = PageIndex(settings, encoders=text_only_encoders)
    assert index_pdf(index, root / "essentials.pdf", BookMeta(organ_systems=["general"])).ok
    url, stop = start_server(settings, index)
    try:
        page.goto(url + "/")
        enter_key(page, "user-key")
        expect(page.locator("#key-status")).to_contain_text("Key accepted")
        page.evaluate(
            """() => { window.drafts = []; new MutationObserver(() => {
                 const d = document.querySelector('#answer .answer-draft'); if (d) window.drafts.push(d.textContent);
               }).observe(document.getElementById('answer'), { childList: true, subtree: true, characterData: true }); }"""
        )
        page.get_by_label("Question", exact=True).fill("Which cells mark Hodgkin lymphoma?")
        page.get_by_role("button", name="Ask", exact=True).click()
        expect(page.locator("#answer-box")).to_contain_text(text, timeout=SLOW_MS)
        drafts = page.evaluate("window.drafts")
        assert drafts and drafts[-1] == text and len(set(drafts)) > 1  # grew piece by piece
        assert page.locator("#progress-steps li.step-answer_token").count() == 0
        expect(page.locator("#progress-steps li.step-answer")).to_contain_text("the model wrote the answer")
    finally:
        stop()
        index.close()
        vlm.close()


def test_a_cited_figure_is_shown_beside_its_page(tmp_path, text_only_encoders, page):
    from tests.test_figures import write_figure_pdf

    settings = server_settings(tmp_path / "data")
    index = PageIndex(settings, encoders=text_only_encoders)
    assert index_pdf(index, write_figure_pdf(tmp_path / "figures.pdf")).ok
    url, stop = start_server(settings, index)
    try:
        ask_with_key(page, url, "What does a caseating granuloma in a lymph node look like?")
        card = page.locator("#citations button.citation", has_text="Fig. 7").first
        expect(card).to_contain_text("Fig. 7, Fig. 8")
        card.click()
        figure = page.locator("#page-figures figure").first
        expect(figure).to_be_visible()
        expect(figure.locator("figcaption")).to_have_text("Fig. 7. Caseating granuloma in a lymph node.")
        page.wait_for_function("() => { const i = document.querySelector('#page-figures img'); return i && i.naturalWidth > 0; }")
        crop = Image.open(io.BytesIO(figure.locator("img").screenshot())).convert("RGB")
        red, green, blue = np.asarray(crop).reshape(-1, 3).mean(axis=0)
        assert green > 120 and red < 80 and blue < 100  # the green picture, cropped from the page
        expect(page.locator("#page-figures figure")).to_have_count(2)
        shot(page, "06-cited-figure")
    finally:
        stop()
        index.close()


def test_the_figure_that_matched_the_image_is_named_and_shown_first(tmp_path, visual_encoders, tiny_colqwen2_path, page):
    from tests.test_figures import _degraded, _pattern, write_patterns_pdf

    settings = server_settings(tmp_path / "data", page_encoder=str(tiny_colqwen2_path))
    index = PageIndex(settings, encoders=visual_encoders)
    assert index_pdf(index, write_patterns_pdf(tmp_path / "patterns.pdf")).ok
    photo = tmp_path / "photo.png"
    _degraded(_pattern("checks")).save(photo)
    url, stop = start_server(settings, index)
    try:
        ask_with_key(page, url, "What pattern is this?", [photo])
        card = page.locator("#citations button.citation").first
        expect(card).to_contain_text("Fig. 1, Fig. 2 (closest to your image)")
        card.click()
        figures = page.locator("#page-figures figure")
        expect(figures).to_have_count(2)
        expect(figures.first).to_have_class("page-figure matched")
        expect(figures.first.locator("figcaption")).to_have_text("Closest to your image. Fig. 2. Checkered pattern.")
        expect(figures.nth(1).locator("figcaption")).to_have_text("Fig. 1. Striped pattern.")
        shot(page, "07-matched-figure")
    finally:
        stop()
        index.close()
