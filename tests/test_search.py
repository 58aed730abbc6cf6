"""Page search over real indexes (qdrant-edge, MiniLM, BM25, tiny ColQwen2) and the fusion of channels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from indexer.jobs import BookMeta, index_pdf
from indexer.settings import IndexerSettings
from rag.encoders import PAGE, PAGE_CENTROIDS, PAGE_FDE
from rag.page_index import PageIndex
from rag.search import (
    SearchError,
    SearchQuery,
    fuse,
    make_snippet,
    peakedness,
    search_many,
    search_pages,
    snippet_text,
    visual_query,
)
from rag.store import ChannelQuery, PageFilter, ScoredId
from tests import pdf_factory
from tests.conftest import PATHOLOGY_FIRST_LABEL, PATHOLOGY_PAGES, write_pathology_book

RENAL_PAGES = [
    pdf_factory.PageSpec(
        heading="Crescentic glomerulonephritis",
        text="Crescents are proliferations of parietal epithelial cells and macrophages in Bowman space. "
        "Fibrin leaks into Bowman space through ruptured glomerular capillaries of the kidney.",
    ),
    pdf_factory.PageSpec(
        heading="Membranous nephropathy",
        text="Subepithelial immune deposits thicken the glomerular basement membrane, which forms spikes "
        "around the deposits on silver stains; the patients have the nephrotic syndrome.",
    ),
]


@dataclass
class Library:
    index: PageIndex
    general: str  # book id of the six-page pathology book, organ system "general"
    renal: str  # book id of the two-page renal book, organ system "kidney"


def _settings(root: Path, page_encoder: str) -> IndexerSettings:
    return IndexerSettings(_env_file=None, data_dir=root / "data", page_encoder=page_encoder, ocr=False, render_dpi=72)


def _build(index: PageIndex, root: Path) -> Library:
    general = index_pdf(index, write_pathology_book(root / "essentials.pdf"), BookMeta(organ_systems=["general"]))
    renal_pdf = pdf_factory.write_text_pdf(root / "renal.pdf", RENAL_PAGES)
    renal = index_pdf(index, renal_pdf, BookMeta(title="Renal Pathology", organ_systems=["kidney"]))
    assert general.ok and renal.ok
    return Library(index, general.book_id, renal.book_id)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, text_only_encoders):
    """Two books indexed without a page encoder (text channels only), shared by the module's read-only tests."""
    root = tmp_path_factory.mktemp("search-text")
    index = PageIndex(_settings(root, "none"), encoders=text_only_encoders)
    yield _build(index, root)
    index.close()


@pytest.fixture(scope="module")
def visual_library(tmp_path_factory: pytest.TempPathFactory, visual_encoders, tiny_colqwen2_path: Path):
    """The same books indexed with the tiny ColQwen2 as page encoder (all four channels)."""
    root = tmp_path_factory.mktemp("search-visual")
    index = PageIndex(_settings(root, str(tiny_colqwen2_path)), encoders=visual_encoders)
    yield _build(index, root)
    index.close()


def search(library: Library, text: str = "", **query) -> list:
    return search_pages(library.index, SearchQuery(text=text, **query))


def histology_picture() -> Image.Image:
    """A stand-in for a user's H&E picture: pink stroma with purple nuclei."""
    image = Image.new("RGB", (320, 240), (235, 170, 200))
    draw = ImageDraw.Draw(image)
    for x in range(20, 320, 45):
        for y in range(20, 240, 40):
            draw.ellipse((x, y, x + 18, y + 14), fill=(90, 40, 130))
    return image


# --- text search -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "page"),
    [
        ("horseshoe arrangement of nuclei in Langhans giant cells", 1),
        ("Reed-Sternberg cells with owl-eye nucleoli", 2),
        ("cheese-like caseous necrosis in tuberculosis", 3),
        ("regenerative nodules and fibrous septa in the liver", 4),
        ("keratin pearls and intercellular bridges", 6),
    ],
)
def test_text_search_finds_the_page_of_the_topic(library: Library, query: str, page: int) -> None:
    hits = search(library, query)
    assert (hits[0].book_id, hits[0].page) == (library.general, page)


@pytest.mark.parametrize(
    ("channel", "query", "page"),
    [
        ("bm25", "owl-eye nucleoli", 2),
        ("bm25", "keratin pearls", 6),
        ("text", "binucleate giant tumour cells of Hodgkin disease", 2),  # meaning, not shared words
        ("text", "scarring of the hepatic parenchyma", 4),
    ],
)
def test_each_text_channel_alone(library: Library, channel: str, query: str, page: int) -> None:
    hits = search(library, query, channels=(channel,), books=[library.general])
    assert (hits[0].book_id, hits[0].page) == (library.general, page)
    assert all(set(hit.channel_scores) == {channel} == set(hit.channel_ranks) for hit in hits)
    assert hits[0].channel_ranks[channel] == 1


def test_page_hit_fields(library: Library) -> None:
    hits = search(library, "Reed-Sternberg cells", top_k=3)

    assert len(hits) == 3
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    top = hits[0]
    assert (top.book_id, top.title, top.page) == (library.general, "Essentials of Pathology", 2)
    assert top.page_label == str(PATHOLOGY_FIRST_LABEL + 1)
    assert top.section_path == ["Hematopathology", "Hodgkin lymphoma"]
    assert "**Reed-Sternberg**" in top.snippet and "**cells**" in top.snippet
    assert top.snippet.replace("**", "") in " ".join(top.text.split())
    assert set(top.channel_scores) == {"bm25", "text"} and top.channel_ranks["bm25"] == 1
    assert top.score > 0 and all(value > 0 for value in top.channel_scores.values())
    assert library.index.images.exists(top.image_key)
    assert top.text.startswith("Hodgkin lymphoma")  # the page text rides along for the agent...
    assert "text" not in top.model_dump()  # ...but is not part of the serialised hit


def test_book_filter(library: Library) -> None:
    query = "crescents in Bowman space"
    assert {hit.book_id for hit in search(library, query)} == {library.general, library.renal}

    only_renal = search(library, query, books=[library.renal])
    assert {hit.book_id for hit in only_renal} == {library.renal}
    assert only_renal[0].page == 1
    only_general = search(library, query, books=[library.general])
    assert {hit.book_id for hit in only_general} == {library.general}
    assert only_general[0].page == 5


def test_organ_system_filter(library: Library) -> None:
    query = "glomerular basement membrane"
    kidney = search(library, query, organ_systems=["kidney"])
    assert kidney and {hit.book_id for hit in kidney} == {library.renal}
    assert kidney[0].page == 2
    general = search(library, query, organ_systems=["general"])
    assert general and {hit.book_id for hit in general} == {library.general}
    assert {hit.book_id for hit in search(library, query, organ_systems=["kidney", "general"])} == {
        library.general,
        library.renal,
    }
    assert search(library, query, organ_systems=["bone"]) == []


def test_unknown_book_id_is_an_error(library: Library) -> None:
    with pytest.raises(SearchError, match="unknown book id.*no-such-book"):
        search(library, "granuloma", books=[library.general, "no-such-book"])


@pytest.mark.parametrize("text", ["", "   \n "])
def test_empty_query_is_an_error(library: Library, text: str) -> None:
    with pytest.raises(SearchError, match="needs a text query, an image, or both"):
        search(library, text)


def test_unknown_or_unusable_channels_are_errors(library: Library) -> None:
    with pytest.raises(SearchError, match="unknown channel"):
        search(library, "granuloma", channels=("bm25", "colour"))
    with pytest.raises(SearchError, match="none of the channels"):
        search(library, "granuloma", channels=("page",))  # no page encoder in this index


@pytest.mark.parametrize("text", ["", "Reed-Sternberg cells"])
def test_image_query_without_page_encoder_is_a_clear_error(library: Library, text: str) -> None:
    with pytest.raises(SearchError, match="image search needs a page encoder.*PATHORAG_PAGE_ENCODER"):
        search(library, text, image=histology_picture())


# --- the visual channels (tiny random ColQwen2: rankings are arbitrary, the plumbing is real) ---------


def test_image_query(visual_library: Library) -> None:
    hits = search(visual_library, image=histology_picture(), top_k=5)

    assert len(hits) == 5
    assert all(set(hit.channel_scores) == {"image"} for hit in hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert all(hit.snippet for hit in hits)  # no query words: the page's first passage, unmarked
    assert not any("**" in hit.snippet for hit in hits)


def test_joint_text_and_image_query(visual_library: Library) -> None:
    hits = search(visual_library, "Reed-Sternberg cells with owl-eye nucleoli", image=histology_picture())

    assert hits
    assert {"image", "page"} <= set(hits[0].channel_scores)
    assert set().union(*(hit.channel_scores for hit in hits)) == {"bm25", "text", "page", "image"}
    assert (visual_library.general, 2) in [(hit.book_id, hit.page) for hit in hits[:3]]
    assert "**Reed-Sternberg**" in hits[0].snippet or "**Reed-Sternberg**" in hits[1].snippet


def test_text_query_uses_the_page_channel_and_filters_apply(visual_library: Library) -> None:
    hits = search(visual_library, "crescents in Bowman space", organ_systems=["kidney"])
    assert hits and {hit.book_id for hit in hits} == {visual_library.renal}
    assert all("page" in hit.channel_scores for hit in hits)
    only_page = search(visual_library, "granuloma", channels=("page",), books=[visual_library.general])
    assert len(only_page) == len(PATHOLOGY_PAGES)
    assert all(set(hit.channel_scores) == {"page"} for hit in only_page)


@pytest.mark.parametrize("text", ["Reed-Sternberg cells with owl-eye nucleoli", "crescents in Bowman space"])
def test_visual_chain_ranks_as_exact_maxsim(visual_library: Library, text: str) -> None:
    """FDE -> centroids -> exact MaxSim gives the exact MaxSim ranking when every page fits the candidate lists."""
    index = visual_library.index
    page_filter = PageFilter(book_ids=[visual_library.general, visual_library.renal])
    tokens = index.encoders.page.embed_queries([text])[0]
    chained = visual_query(tokens, index.encoders.page.fde, limit=5)
    assert [chained.using, chained.prefetch.using, chained.prefetch.prefetch.using] == [PAGE, PAGE_CENTROIDS, PAGE_FDE]
    assert (chained.prefetch.limit, chained.prefetch.prefetch.limit) == (50, 1000)
    wide = visual_query(tokens, index.encoders.page.fde, limit=300)
    assert (wide.limit, wide.prefetch.limit, wide.prefetch.prefetch.limit) == (300, 300, 3000)
    large_library = visual_query(tokens, index.encoders.page.fde, limit=50, library_pages=100_000)
    assert (large_library.limit, large_library.prefetch.limit, large_library.prefetch.prefetch.limit) == (50, 100, 2000)

    exact = index.store.search(ChannelQuery(PAGE, tokens, 5), page_filter)
    hits = index.store.search(chained, page_filter)

    assert [h.point_id for h in hits] == [h.point_id for h in exact]
    assert [h.score for h in hits] == pytest.approx([h.score for h in exact], rel=1e-4)
    page_hits = search(visual_library, text, channels=("page",), top_k=5)
    assert (page_hits[0].book_id, page_hits[0].page) == _page_of(index, exact[0].point_id)


def test_visual_channels_bring_their_own_number_of_candidates(
    visual_library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exact MaxSim is the costly step, so the page channel brings `visual_prefetch_limit` pages to
    fusion and the text channels `prefetch_limit`; never fewer than the search returns."""
    base = visual_library.index
    settings = base.settings.model_copy(update={"prefetch_limit": 8, "visual_prefetch_limit": 3})
    index = PageIndex(settings, store=base.store, encoders=base.encoders)
    asked: dict[str, int] = {}
    answer = base.store.search

    def recording_search(query: ChannelQuery, page_filter: PageFilter) -> list[ScoredId]:
        asked[query.using] = query.limit
        return answer(query, page_filter)

    monkeypatch.setattr(base.store, "search", recording_search)
    hits = search_pages(index, SearchQuery(text="granuloma with giant cells", top_k=2))
    assert len(hits) == 2
    assert asked == {"bm25": 8, "text": 8, PAGE: 3}
    search_pages(index, SearchQuery(text="granuloma with giant cells", top_k=20))
    assert asked == {"bm25": 20, "text": 20, PAGE: 20}


def _page_of(index: PageIndex, point_id: str) -> tuple[str, int]:
    record = index.store.get_pages([point_id])[point_id]
    return record.book_id, record.page


# --- fusion ------------------------------------------------------------------------------------------


def ranked(*pairs: tuple[str, float]) -> list[ScoredId]:
    return [ScoredId(point_id, score) for point_id, score in pairs]


EQUAL = {"bm25": 1.0, "text": 1.0}


@pytest.mark.parametrize("method", ["rrf", "weighted", "peaked"])
def test_fuse_page_first_in_both_channels_wins(method: str) -> None:
    rankings = {
        "bm25": ranked(("a", 12.0), ("b", 11.0), ("c", 1.0)),
        "text": ranked(("a", 0.9), ("c", 0.5), ("b", 0.1)),
    }

    fused = fuse(rankings, EQUAL, method)

    assert fused[0][0] == "a"
    assert {point_id for point_id, _ in fused} == {"a", "b", "c"}
    assert [score for _, score in fused] == sorted((score for _, score in fused), reverse=True)


def test_fuse_rrf_scores_and_missing_pages() -> None:
    rankings = {"bm25": ranked(("a", 5.0), ("b", 3.0)), "text": ranked(("b", 0.8))}

    fused = dict(fuse(rankings, EQUAL, "rrf", rrf_k=60))

    assert fused["a"] == pytest.approx(1 / 61)  # missing from `text`: nothing from it
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)


def test_fuse_rrf_ties_keep_a_stable_order() -> None:
    rankings = {"bm25": ranked(("b", 5.0), ("a", 3.0)), "text": ranked(("a", 0.8), ("b", 0.2))}
    assert [point_id for point_id, _ in fuse(rankings, EQUAL, "rrf")] == ["a", "b"]


def test_fuse_distribution_based_scores_and_missing_pages() -> None:
    rankings = {
        "bm25": ranked(("a", 3.0), ("b", 2.0), ("c", 1.0)),
        "text": ranked(("b", 0.9), ("c", 0.1)),  # `a` missing: it takes the list's lowest score
    }

    fused = dict(fuse(rankings, EQUAL, "weighted"))

    def scaled(score: float, scores: list[float]) -> float:
        mean = sum(scores) / len(scores)
        std = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
        return (score - (mean - 3 * std)) / (6 * std)

    bm25, text = [3.0, 2.0, 1.0], [0.9, 0.1]
    assert fused["a"] == pytest.approx(scaled(3.0, bm25) + scaled(0.1, text))
    assert fused["b"] == pytest.approx(scaled(2.0, bm25) + scaled(0.9, text))
    assert fused["c"] == pytest.approx(scaled(1.0, bm25) + scaled(0.1, text))
    # missing from a channel never counts more than being last in it
    assert fused["a"] - fused["c"] == pytest.approx(scaled(3.0, bm25) - scaled(1.0, bm25))


def test_peaked_fusion_follows_the_channel_with_a_clear_winner() -> None:
    # bm25 has one page far above the rest; text ranks another page first, but its list is flat
    bm25 = ranked(("a", 9.0), *((f"p{i}", 1.0 + 0.01 * i) for i in range(20)), ("b", 1.5))
    text = ranked(("b", 0.52), ("a", 0.50), *((f"p{i}", 0.49 - 0.001 * i) for i in range(20)))
    rankings = {"bm25": bm25, "text": text}
    text_heavy = {"bm25": 1.0, "text": 3.0}
    assert fuse(rankings, text_heavy, "weighted")[0][0] == "b"  # the fixed weights let the flat list win
    assert fuse(rankings, text_heavy, "peaked")[0][0] == "a"
    scores = np.array([hit.score for hit in bm25])
    assert peakedness(scores) == pytest.approx((9.0 - scores.mean()) / scores.std())
    assert peakedness(np.array([3.0])) == 1.0 and peakedness(np.array([2.0, 2.0])) == 1.0
    assert peakedness(np.array([4.0, 1.0])) == pytest.approx(1.0)  # a two-page list: always one


def test_fuse_distribution_based_flat_or_empty_channels() -> None:
    rankings = {"bm25": ranked(("a", 2.0), ("b", 2.0)), "text": [], "page": ranked(("b", 0.7), ("a", 0.2))}

    fused = fuse(rankings, {"bm25": 1.0, "text": 1.0, "page": 1.0}, "weighted")

    assert [point_id for point_id, _ in fused] == ["b", "a"]  # the flat channel decides nothing
    assert all(score == score for _, score in fused)  # no NaN from a zero spread
    assert fuse({"bm25": [], "text": []}, EQUAL, "weighted") == []


@pytest.mark.parametrize("method", ["rrf", "weighted"])
def test_fuse_weights_matter(method: str) -> None:
    rankings = {"bm25": ranked(("a", 2.0), ("b", 1.0)), "text": ranked(("b", 0.9), ("a", 0.3))}

    def winner(bm25: float, text: float) -> str:
        return fuse(rankings, {"bm25": bm25, "text": text}, method)[0][0]

    assert winner(2.0, 1.0) == "a"
    assert winner(1.0, 2.0) == "b"
    assert winner(1.0, 0.0) == "a"  # a zero weight switches a channel off
    assert winner(0.0, 1.0) == "b"


OLD_TERMS_PAGES = [
    pdf_factory.PageSpec(
        heading="Boils",
        text="A boil is an acute inflammation of a hair follicle and its sebaceous gland, caused by the "
        "staphylococcus; crops of boils occur in debilitated patients.",
    ),
    pdf_factory.PageSpec(
        heading="Cellulitis",
        text="Diffuse spreading inflammation of the subcutaneous tissue follows a wound of the hand; "
        "lymphangitis and enlarged axillary glands may accompany it.",
    ),
]


@pytest.mark.parametrize("expansion", [True, False])
def test_query_expansion_bridges_a_vocabulary_gap(tmp_path: Path, text_only_encoders, expansion: bool):
    """'furuncles' never occurs in a book that says 'boils': expansion finds the page, plain BM25 does not."""
    settings = _settings(tmp_path, "none").model_copy(update={"query_expansion": expansion})
    index = PageIndex(settings, encoders=text_only_encoders)
    try:
        assert index_pdf(index, pdf_factory.write_text_pdf(tmp_path / "old.pdf", OLD_TERMS_PAGES)).ok
        hits = search_pages(index, SearchQuery(text="recurrent furuncles", channels=("bm25",)))
        assert [hit.page for hit in hits][:1] == ([1] if expansion else [])
    finally:
        index.close()


def test_query_expansion_is_skipped_when_the_books_use_the_query_words(library: Library):
    """'macrophages' is in the index, so its other names (e.g. 'histiocyte') are not added; 'hemorrhage' is not."""
    from rag.search import _lexical_query
    from rag.store import PageFilter

    settings = library.index.settings.model_copy(update={"query_expansion": True})
    index = PageIndex(settings, store=library.index.store, encoders=library.index.encoders)
    sparse = index.encoders.sparse
    plain = sparse.embed_query("macrophages in Bowman space")
    assert _lexical_query(index, "macrophages in Bowman space", PageFilter()) == plain
    query = "caseous necrosis with hemorrhage"
    expanded = _lexical_query(index, query, PageFilter())
    assert set(sparse.embed_query("haemorrhage").indices) <= set(expanded.indices)


def test_queries_searched_together_match_one_by_one(visual_library: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent round's sub-queries go to `search_many`: one encoder call per channel for all their
    texts, each query's hits those of its own search, and a query that cannot be served reports why."""
    index = visual_library.index
    texts = ["Reed-Sternberg cells with owl-eye nucleoli", "crescents in Bowman space", "caseating granuloma"]
    calls: dict[str, list[list[str]]] = {"text": [], "page": []}
    for channel, encoder, method in (("text", index.encoders.text, "embed_documents"), ("page", index.encoders.page, "embed_queries")):
        original = getattr(encoder, method)
        monkeypatch.setattr(encoder, method, lambda batch, original=original, channel=channel: calls[channel].append(list(batch)) or original(batch))

    queries = [SearchQuery(text=text, top_k=5) for text in texts]
    queries += [SearchQuery(text=texts[0], channels=("bm25", "text")), SearchQuery(text="x", books=["no-such-book"])]
    results = search_many(index, queries, workers=3)

    assert calls["text"] == [[*texts, texts[0], "x"]]
    assert calls["page"] == [[*texts, "x"]]  # the text-only query gets no page-encoder embedding
    for query, result in zip(queries[:4], results):
        alone = search_pages(index, SearchQuery(text=query.text, top_k=query.top_k, channels=query.channels))
        assert [(h.book_id, h.page) for h in result.hits] == [(h.book_id, h.page) for h in alone]
        assert [h.score for h in result.hits] == pytest.approx([h.score for h in alone], rel=1e-3)
        assert result.error == "" and result.seconds > 0
    assert results[4].hits == [] and "unknown book id(s): no-such-book" in results[4].error


def test_a_rounds_shared_image_is_embedded_once(visual_library: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    index = visual_library.index
    calls: list[int] = []
    original = index.encoders.page.embed_query_images
    monkeypatch.setattr(index.encoders.page, "embed_query_images", lambda images: calls.append(len(images)) or original(images))
    image, other = histology_picture(), histology_picture().rotate(90)
    queries = [SearchQuery(text=text, image=image, top_k=5) for text in ("Reed-Sternberg cells", "caseating granuloma")]
    queries += [SearchQuery(image=other, top_k=5), SearchQuery(text="crescents", image=image, channels=("bm25",))]
    results = search_many(index, queries)
    assert calls == [2]  # one call, each distinct image once; the bm25-only query's image is not embedded
    alone = search_pages(index, SearchQuery(text="Reed-Sternberg cells", image=image, top_k=5))
    assert [(h.book_id, h.page) for h in results[0].hits] == [(h.book_id, h.page) for h in alone]


def test_a_snippet_is_sentences_of_one_section_not_its_heading_or_running_header() -> None:
    text = (
        "Manual of Pathology — p. 61 — IV SUPPURATION\n"
        "is comparable to poisoning by any other alkaloid.\n"
        "Hodgkin lymphoma\n"
        "Reed-Sternberg cells are large binucleate cells. They express CD15 and CD30.\n"
        "Caseous necrosis\n"
        "Caseous necrosis is a cheese-like necrosis of tuberculosis."
    )
    snippet = make_snippet(text, "Which cells are characteristic of Hodgkin lymphoma?")
    # the heading's words choose the section; the passage is its sentences, up to the next heading
    assert snippet_text(snippet) == "Reed-Sternberg cells are large binucleate cells. They express CD15 and CD30."
    assert snippet_text(make_snippet(text, "poisoning by an alkaloid")) == "is comparable to poisoning by any other alkaloid."
    assert snippet_text(make_snippet("PLATE IV\nLiver fluke", "liver")) == "Liver fluke"  # nothing but headings: those
