"""Figures found at indexing: pictures and drawings with their "Fig. N" captions, at known places on
generated PDFs; the demo atlas's three figures; pages without figures have none; crops stored."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import numpy as np
import pymupdf
import pytest
from PIL import Image, ImageDraw, ImageFilter

from indexer.jobs import index_pdf
from indexer.settings import IndexerSettings
from rag.encoders import PAGE
from rag.page_index import PageIndex
from rag.search import SearchQuery, search_pages
from rag.store import ChannelQuery, PageFilter

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 595, 842
PHOTO = pymupdf.Rect(150, 120, 450, 345)  # a raster picture, caption below
DRAWING = pymupdf.Rect(100, 520, 300, 700)  # a vector drawing, caption above
ORNAMENT = pymupdf.Rect(60, 60, 80, 80)  # a small picture: not a figure
BIG_PHOTO = pymupdf.Rect(100, 200, 500, 600)  # a large picture without a caption


def _picture(page: pymupdf.Page, rect: pymupdf.Rect, rgb: tuple[int, int, int]) -> None:
    pixmap = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 120, 90), False)
    pixmap.set_rect(pixmap.irect, rgb)
    page.insert_image(rect, pixmap=pixmap, keep_proportion=False)


def write_figure_pdf(path: Path) -> Path:
    doc = pymupdf.open()
    page = doc.new_page(width=WIDTH, height=HEIGHT)
    page.insert_text((60, 100), "Granulomas are compact aggregates of epithelioid macrophages.", fontsize=11)
    _picture(page, PHOTO, (20, 160, 60))
    _picture(page, ORNAMENT, (200, 0, 0))
    page.insert_textbox(pymupdf.Rect(150, 352, 450, 380), "Fig. 7. Caseating granuloma in a lymph node.", fontsize=9, fontname="heit")
    page.insert_text((60, 420), "Fibrinoid necrosis is seen in the walls of arteries in vasculitis.", fontsize=11)
    page.insert_textbox(pymupdf.Rect(100, 495, 400, 515), "Figure 8: Fibrinoid necrosis, diagram.", fontsize=9, fontname="heit")
    shape = page.new_shape()
    shape.draw_rect(DRAWING)
    shape.draw_line(DRAWING.tl, DRAWING.br)
    shape.draw_circle(DRAWING.tl + (100, 90), 40)
    shape.finish(color=(0, 0, 0), fill=(0.9, 0.8, 0.2), width=1.5)
    shape.commit()
    plain = doc.new_page(width=WIDTH, height=HEIGHT)  # text, a header rule and a thin box: no figure
    plain.draw_line((50, 50), (545, 50), width=0.8)
    plain.draw_rect(pymupdf.Rect(50, 300, 545, 310), width=0.5)
    plain.insert_text((60, 100), "Chronic inflammation is of prolonged duration.", fontsize=11)
    plain.insert_text((60, 140), "As Fig. 7 shows, the granuloma has a caseous centre.", fontsize=11)
    uncaptioned = doc.new_page(width=WIDTH, height=HEIGHT)
    uncaptioned.insert_text((60, 100), "A plate of tuberculous lung.", fontsize=11)
    _picture(uncaptioned, BIG_PHOTO, (40, 40, 200))
    doc.save(path)
    return path


@pytest.fixture
def index(tmp_path, text_only_encoders):
    settings = IndexerSettings(_env_file=None, data_dir=tmp_path / "data", page_encoder="none", ocr=False, render_dpi=72)
    index = PageIndex(settings, encoders=text_only_encoders)
    yield index
    index.close()


def _fractions(rect: pymupdf.Rect) -> tuple[float, ...]:
    return (rect.x0 / WIDTH, rect.y0 / HEIGHT, rect.x1 / WIDTH, rect.y1 / HEIGHT)


def test_figures_with_their_captions_boxes_and_crops(tmp_path, index) -> None:
    report = index_pdf(index, write_figure_pdf(tmp_path / "figures.pdf"))
    assert report.ok
    first, plain, uncaptioned = (index.page(report.book_id, n) for n in (1, 2, 3))

    assert [(f.number, f.caption) for f in first.figures] == [
        ("7", "Fig. 7. Caseating granuloma in a lymph node."),
        ("8", "Figure 8: Fibrinoid necrosis, diagram."),
    ]
    for figure, rect in zip(first.figures, (PHOTO, DRAWING)):
        assert np.allclose(figure.box, _fractions(rect), atol=0.01), (figure.box, _fractions(rect))
    crop = np.asarray(index.images.open(first.figures[0].image_key).convert("RGB")).astype(int)
    assert abs(crop.shape[1] / crop.shape[0] - PHOTO.width / PHOTO.height) < 0.05
    assert np.abs(crop.reshape(-1, 3).mean(axis=0) - (20, 160, 60)).max() < 12  # the picture, not the page around it

    assert plain.figures == []  # a rule, a thin box and a mention of "Fig. 7" in the text are not figures
    assert [(f.number, f.caption) for f in uncaptioned.figures] == [("", "")]
    assert np.allclose(uncaptioned.figures[0].box, _fractions(BIG_PHOTO), atol=0.01)


@pytest.mark.parametrize("rotation", [0, 90])
def test_pictures_placed_off_the_page_count_only_where_they_are_shown(tmp_path, index, rotation) -> None:
    # A real textbook (the bacteriology PDF, page 100) places an image wholly right of its page.
    doc = pymupdf.open()
    page = doc.new_page(width=WIDTH, height=HEIGHT)
    page.set_rotation(rotation)
    page.insert_text((60, 100), "Colonies of staphylococci on agar.", fontsize=11)
    _picture(page, pymupdf.Rect(WIDTH + 2, 53, WIDTH + 170, 188), (200, 0, 0))  # off the page
    _picture(page, pymupdf.Rect(WIDTH - 200, 300, WIDTH + 200, 500), (20, 160, 60))  # half off it
    page.insert_textbox(pymupdf.Rect(WIDTH - 200, 505, WIDTH - 10, 530), "Fig. 3. Colonies.", fontsize=9, fontname="heit")
    doc.save(tmp_path / "off_page.pdf")

    report = index_pdf(index, tmp_path / "off_page.pdf")
    assert report.ok, report
    (figure,) = index.page(report.book_id, 1).figures
    assert figure.number == "3"
    left, top, right, bottom = figure.box
    assert abs((right - left) * (bottom - top) - 200 * 200 / (WIDTH * HEIGHT)) < 0.005, figure.box  # the visible half
    if rotation == 0:
        assert np.allclose(figure.box, _fractions(pymupdf.Rect(WIDTH - 200, 300, WIDTH, 500)), atol=0.01), figure.box


def test_the_demo_atlas_figures_are_found_with_their_captions(tmp_path, index) -> None:
    report = index_pdf(index, ROOT / "corpora" / "demo_atlas.pdf")
    assert report.ok
    found = {n: index.page(report.book_id, n).figures for n in range(1, report.pages_indexed + 1)}
    with_figures = {n: [(f.number, f.caption[:7]) for f in figures] for n, figures in found.items() if figures}
    assert with_figures == {3: [("1", "Fig. 1.")], 12: [("2", "Fig. 2.")], 13: [("3", "Fig. 3.")]}
    assert "H&E section of skin" in found[3][0].caption and "DAB component" in found[13][0].caption


def test_cited_pages_carry_their_figures_and_the_crops_are_served(tmp_path, text_only_encoders) -> None:
    from tests.test_server import USER, server_settings, start_server

    settings = server_settings(tmp_path / "data")
    index = PageIndex(settings, encoders=text_only_encoders)
    report = index_pdf(index, write_figure_pdf(tmp_path / "figures.pdf"))
    url, stop = start_server(settings, index)
    try:
        body = httpx.post(url + "/v1/ask", headers=USER, json={"question": "What does a caseating granuloma in a lymph node look like?"}, timeout=60).json()
        cited = next(c for c in body["citations"] if c["page"] == 1)
        figures = cited["figures"]
        assert [(f["number"], f["image_url"]) for f in figures] == [
            ("7", f"/v1/pages/{report.book_id}/1/figures/1"), ("8", f"/v1/pages/{report.book_id}/1/figures/2"),
        ]
        assert figures[0]["caption"] == "Fig. 7. Caseating granuloma in a lymph node." and "image_key" not in figures[0]
        crop = httpx.get(url + figures[0]["image_url"], headers=USER)
        assert crop.status_code == 200 and crop.headers["content-type"] == "image/webp"
        pixels = np.asarray(Image.open(io.BytesIO(crop.content)).convert("RGB")).astype(int)
        assert np.abs(pixels.reshape(-1, 3).mean(axis=0) - (20, 160, 60)).max() < 12  # the green picture
        thumb = Image.open(io.BytesIO(httpx.get(url + figures[0]["image_url"], headers=USER, params={"size": "40"}).content))
        assert max(thumb.size) == 40

        signed = cited["link"].split("?", 1)[1]  # the page's signed link opens its figures too, without a key
        assert httpx.get(f"{url}{figures[1]['image_url']}?{signed}").status_code == 200
        assert httpx.get(url + figures[0]["image_url"]).status_code == 401
        assert httpx.get(f"{url}/v1/pages/{report.book_id}/2/figures/1?{signed}").status_code == 403  # another page's link
        missing = httpx.get(f"{url}/v1/pages/{report.book_id}/1/figures/3", headers=USER)
        assert missing.status_code == 404 and "has 2 figure(s)" in missing.json()["error"]["message"]
        assert httpx.get(f"{url}/v1/pages/{report.book_id}/2/figures/1", headers=USER).status_code == 404

        # A chat reader gets each figure under its source, as a link that opens the crop without a key.
        chat = httpx.post(url + "/v1/chat/completions", headers=USER, timeout=60, json={
            "model": "pathorag", "messages": [{"role": "user", "content": "What does a caseating granuloma in a lymph node look like?"}]}).json()
        text = chat["choices"][0]["message"]["content"]
        line = next(line for line in text.splitlines() if line.startswith("- [Fig. 7]("))
        assert line.endswith("on this page: Fig. 7. Caseating granuloma in a lymph node.")
        figure_link = line.split("](", 1)[1].split(")", 1)[0]
        assert figure_link == chat["citations"][[c["page"] for c in chat["citations"]].index(1)]["figures"][0]["link"]
        opened = httpx.get(figure_link)
        assert opened.status_code == 200 and opened.content == crop.content
    finally:
        stop()
        index.close()


@pytest.mark.parametrize("with_image", [True, False])
def test_a_question_with_an_image_shows_the_model_the_pages_figures(tmp_path, text_only_encoders, vlm, with_image) -> None:
    from agent import Agent
    from server.settings import ServerSettings
    from tests.test_agent import answer, inspection, plan

    settings = ServerSettings(
        _env_file=None, data_dir=tmp_path / "data", page_encoder="none", ocr=False, render_dpi=72,
        vlm_base_url=vlm.base_url, vlm_model=vlm.model, agent_pages_per_call=1, agent_max_turns=1,
    )
    index = PageIndex(settings, encoders=text_only_encoders)
    assert index_pdf(index, write_figure_pdf(tmp_path / "figures.pdf")).ok
    vlm.script(plan("caseating granuloma lymph node"), inspection(), answer(text="A caseating granuloma."))
    slide = Image.new("RGB", (64, 64), (30, 150, 70))
    agent = Agent(settings, index)
    try:
        agent.run("Is this a caseating granuloma in a lymph node?", images=[slide] if with_image else [])
    finally:
        agent.close()
        index.close()
    parts = vlm.requests[1]["messages"][-1]["content"]  # the inspect request
    texts = [part["text"] for part in parts if part["type"] == "text"]
    images = sum(part["type"] == "image_url" for part in parts)
    figure_lines = [text for text in texts if ", cropped" in text]
    if with_image:
        assert figure_lines == ["Fig. 7 of [P1], cropped: Fig. 7. Caseating granuloma in a lymph node.",
                                "Fig. 8 of [P1], cropped: Figure 8: Fibrinoid necrosis, diagram."]
        assert images == 1 + 2  # the page, then its two figures
    else:
        assert figure_lines == [] and images == 1


# --- figure crops in the visual channel (tiny random ColQwen2: crops and degraded copies of the same
# pictures still match, since they share their pixels) -------------------------------------------------


def _pattern(kind: str) -> Image.Image:
    image = Image.new("RGB", (240, 180), (245, 225, 232))
    draw = ImageDraw.Draw(image)
    if kind == "stripes":
        for x in range(0, 240, 24):
            draw.rectangle((x, 0, x + 10, 180), fill=(120, 30, 90))
    elif kind == "checks":
        for x in range(0, 240, 30):
            for y in range(0, 180, 30):
                if (x // 30 + y // 30) % 2:
                    draw.rectangle((x, y, x + 30, y + 30), fill=(30, 60, 160))
    else:  # scattered nuclei
        rng = np.random.default_rng(3)
        for x, y in rng.integers(0, 230, size=(60, 2)):
            draw.ellipse((x, y * 0.75, x + 12, y * 0.75 + 9), fill=(90, 40, 130))
    return image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _degraded(image: Image.Image) -> Image.Image:
    """A user's photo of a figure: smaller, blurred, JPEG-compressed."""
    buffer = io.BytesIO()
    image.resize((200, 150)).filter(ImageFilter.GaussianBlur(1)).save(buffer, format="JPEG", quality=60)
    return Image.open(io.BytesIO(buffer.getvalue()))


def write_patterns_pdf(path: Path) -> Path:
    """Page 1: Fig. 1 (stripes) and Fig. 2 (checks); page 2: Fig. 3 (nuclei); pages 3-4: text only."""
    doc = pymupdf.open()
    first = doc.new_page(width=WIDTH, height=HEIGHT)
    first.insert_text((60, 90), "Lichen planus shows a band of lymphocytes at the junction.", fontsize=11)
    for rect, kind, caption in ((pymupdf.Rect(100, 120, 340, 300), "stripes", "Fig. 1. Striped pattern."),
                                (pymupdf.Rect(100, 420, 340, 600), "checks", "Fig. 2. Checkered pattern.")):  # fmt: skip
        first.insert_image(rect, stream=_png(_pattern(kind)))
        first.insert_textbox(pymupdf.Rect(rect.x0, rect.y1 + 5, 450, rect.y1 + 30), caption, fontsize=9)
    second = doc.new_page(width=WIDTH, height=HEIGHT)
    second.insert_text((60, 90), "Tuberculosis forms caseating granulomas.", fontsize=11)
    second.insert_image(pymupdf.Rect(150, 300, 390, 480), stream=_png(_pattern("nuclei")))
    second.insert_textbox(pymupdf.Rect(150, 485, 450, 510), "Fig. 3. Scattered nuclei.", fontsize=9)
    for text in ("Cirrhosis forms regenerative nodules.", "Crescents fill Bowman space."):
        doc.new_page(width=WIDTH, height=HEIGHT).insert_text((60, 90), text, fontsize=11)
    doc.save(path)
    return path


@pytest.fixture
def visual_index(tmp_path, visual_encoders, tiny_colqwen2_path):
    settings = IndexerSettings(
        _env_file=None, data_dir=tmp_path / "data", page_encoder=str(tiny_colqwen2_path), ocr=False, render_dpi=72
    )
    index = PageIndex(settings, encoders=visual_encoders)
    yield index
    index.close()


@pytest.mark.parametrize(("kind", "page", "figure"), [("stripes", 1, 1), ("checks", 1, 2), ("nuclei", 2, 1)])
def test_an_image_query_lands_on_the_figure_it_shows(tmp_path, visual_index, kind, page, figure) -> None:
    report = index_pdf(visual_index, write_patterns_pdf(tmp_path / "patterns.pdf"))
    assert report.ok
    query = SearchQuery(image=_degraded(_pattern(kind)), top_k=4)
    hits = search_pages(visual_index, query)
    assert (hits[0].page, hits[0].matched_figure) == (page, figure)
    assert set(hits[0].channel_scores) == {"image", "figure"}
    assert all(hit.matched_figure <= len(hit.figures) for hit in hits)
    assert not any(hit.matched_figure for hit in hits if not hit.figures)

    # The image against whole pages only: the page may still rank, but no figure is named.
    pages_only = search_pages(visual_index, SearchQuery(image=query.image, channels=("image",), top_k=4))
    assert pages_only and not any(hit.matched_figure for hit in pages_only)


def test_figure_points_follow_their_book(tmp_path, visual_index) -> None:
    report = index_pdf(visual_index, write_patterns_pdf(tmp_path / "patterns.pdf"))
    tokens = visual_index.encoders.page.embed_query_images([_pattern("checks")])[0]
    lookup = ChannelQuery(PAGE, tokens, 10)
    every_book = PageFilter(book_ids=[report.book_id])
    found = {(visual_index.store.get_pages([hit.page_point_id])[hit.page_point_id].page, hit.figure)
             for hit in visual_index.store.search_figures(lookup, every_book)}  # fmt: skip
    assert found == {(1, 1), (1, 2), (2, 1)}
    assert visual_index.count_pages(report.book_id) == 4
    visual_index.remove_book(report.book_id)
    assert visual_index.store.search_figures(lookup, every_book) == []


def test_a_cited_figure_that_matched_the_image_is_named_first(tmp_path, visual_encoders, tiny_colqwen2_path) -> None:
    from tests.test_server import USER, server_settings, start_server

    settings = server_settings(tmp_path / "data", page_encoder=str(tiny_colqwen2_path))
    index = PageIndex(settings, encoders=visual_encoders)
    report = index_pdf(index, write_patterns_pdf(tmp_path / "patterns.pdf"))
    photo = io.BytesIO()
    _degraded(_pattern("checks")).save(photo, format="PNG")
    url, stop = start_server(settings, index)
    try:
        body = httpx.post(url + "/v1/ask", headers=USER, timeout=120, data={"question": "What pattern is this?"},
                          files={"images": ("photo.png", photo.getvalue(), "image/png")}).json()  # fmt: skip
        cited = body["citations"][0]
        assert (cited["book_id"], cited["page"], cited["matched_figure"]) == (report.book_id, 1, 2)
        assert [f["number"] for f in cited["figures"]] == ["1", "2"]

        image = "data:image/png;base64," + base64.b64encode(photo.getvalue()).decode()
        chat = httpx.post(url + "/v1/chat/completions", headers=USER, timeout=120, json={"model": "pathorag", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What pattern is this?"},
                                         {"type": "image_url", "image_url": {"url": image}}]}]}).json()  # fmt: skip
        lines = chat["choices"][0]["message"]["content"].splitlines()
        first_page = lines[next(n for n, line in enumerate(lines) if ", p. 1 " in line or line.endswith(", p. 1")):]
        figure_lines = [line for line in first_page if line.startswith("- [Fig. ")][:2]
        assert figure_lines[0].startswith("- [Fig. 1](") and "closest" not in figure_lines[0]
        assert figure_lines[1].startswith("- [Fig. 2](")
        assert figure_lines[1].endswith("on this page (its figure closest to your image): Fig. 2. Checkered pattern.")
    finally:
        stop()
        index.close()


def test_the_model_sees_the_figure_that_matched_the_image_first(tmp_path, visual_encoders, tiny_colqwen2_path, vlm) -> None:
    from agent import Agent
    from server.settings import ServerSettings
    from tests.test_agent import answer, inspection, plan

    settings = ServerSettings(
        _env_file=None, data_dir=tmp_path / "data", page_encoder=str(tiny_colqwen2_path), ocr=False, render_dpi=72,
        vlm_base_url=vlm.base_url, vlm_model=vlm.model, agent_pages_per_call=1, agent_max_turns=1,
    )
    index = PageIndex(settings, encoders=visual_encoders)
    assert index_pdf(index, write_patterns_pdf(tmp_path / "patterns.pdf")).ok
    plan_with_image = plan("lichen planus band of lymphocytes")
    plan_with_image["queries"][0]["use_image"] = True
    vlm.script(plan_with_image, inspection(), answer(text="A checkered pattern."))
    agent = Agent(settings, index)
    try:
        result = agent.run("Which figure shows this pattern?", images=[_degraded(_pattern("checks"))])
    finally:
        agent.close()
        index.close()
    assert (result.citations[0].page, result.citations[0].matched_figure) == (1, 2)
    parts = vlm.requests[1]["messages"][-1]["content"]  # the inspect request
    figure_lines = [part["text"] for part in parts if part["type"] == "text" and ", cropped" in part["text"]]
    assert figure_lines == [
        "Fig. 2 of [P1], cropped (of the page's figures, the closest to the question's image): Fig. 2. Checkered pattern.",
        "Fig. 1 of [P1], cropped: Fig. 1. Striped pattern.",
    ]
