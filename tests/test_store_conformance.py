"""One conformance suite for both Qdrant backends: qdrant-edge and qdrant-client (local mode)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from rag.encoders.multivector import FixedDimensionalEncoder, page_centroids
from rag.models import BookRecord, FigurePoint, FigurePointRecord, PagePoint, PageRecord, SparseVector
from rag.store import ChannelQuery, PageFilter, ScoredFigure, StoreError, VectorSpec, VectorStore
from rag.store.edge import EdgeStore
from rag.store.server import ServerStore

FDE = FixedDimensionalEncoder(16)
VECTORS = [
    VectorSpec("pooled", "dense", 16),
    VectorSpec("page", "multi", 16, index=False),
    VectorSpec("text", "multi", 8, datatype="float16"),
    VectorSpec("bm25", "sparse"),
    VectorSpec("fde", "dense", FDE.dim, datatype="float16", distance="dot"),
    VectorSpec("centroids", "multi", 16, index=False, datatype="float16"),
    VectorSpec("page_turbo8", "multi", 16, index=False, datatype="turbo8"),
]
BOOKS = ("book-a", "book-b")
PAGES_PER_BOOK = 15
ORGANS = (["liver"], ["lung", "heart"], ["kidney"])
COMMON_TERM, RARE_TERM = 100, 200
RARE_PAGE = 3  # index of the only page holding RARE_TERM
EMPTY_SPARSE_PAGE = 20  # a page whose sparse vector is empty
NO_FILTER = PageFilter()


def _point_id(book_id: str, page: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{book_id}/{page}"))


def _record(book_id: str, page: int) -> PageRecord:
    return PageRecord(
        book_id=book_id,
        title="Robbins & Cotran — Pathologic Basis of Disease",
        page=page,
        page_label=f"{page + 10}",
        section_path=["Liver", "Hépatite virale", "肝炎"],
        text=f"Hepatocytes show ballooning degeneration — page {page} «µm»",
        captions=["Fig. 1: Mallory–Denk bodies", "Fig. 2: ground-glass cells"],
        organ_systems=ORGANS[page % len(ORGANS)],
        content_hash=f"sha256:{book_id}{page}",
        image_key=f"{book_id}/{page:04d}.png",
        ocr=page % 2 == 0,
        page_kind="index" if page % 5 == 0 else "body",
    )


def _sparse(index: int) -> SparseVector:
    if index == RARE_PAGE:
        return SparseVector(indices=[RARE_TERM], values=[1.0])
    if index == EMPTY_SPARSE_PAGE:
        return SparseVector(indices=[], values=[])
    return SparseVector(indices=[COMMON_TERM, 300 + index], values=[1.0, 0.5])


def _make_points() -> list[PagePoint]:
    rng = np.random.default_rng(7)
    points = []
    for index in range(len(BOOKS) * PAGES_PER_BOOK):
        book_id, page = BOOKS[index // PAGES_PER_BOOK], index % PAGES_PER_BOOK + 1
        page_vectors = rng.standard_normal((int(rng.integers(5, 21)), 16)).astype(np.float32)
        text_vectors = rng.standard_normal((int(rng.integers(1, 6)), 8)).astype(np.float32)
        points.append(
            PagePoint(
                point_id=_point_id(book_id, page),
                record=_record(book_id, page),
                dense={"pooled": page_vectors.mean(axis=0), "fde": FDE.page(page_vectors)},
                multi={
                    "page": page_vectors,
                    "page_turbo8": page_vectors,
                    "text": text_vectors,
                    "centroids": page_centroids(page_vectors, k=4),
                },
                sparse={"bm25": _sparse(index)},
            )
        )
    return points


POINTS = _make_points()
QUERY = np.random.default_rng(11).standard_normal((4, 16)).astype(np.float32)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def _maxsim(query: np.ndarray, doc: np.ndarray) -> float:
    return float((_normalise(query) @ _normalise(doc).T).max(axis=1).sum())


def _ranking(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=scores.__getitem__, reverse=True)


def _maxsim_scores(query: np.ndarray, channel: str, points: list[PagePoint] = POINTS) -> dict[str, float]:
    return {p.point_id: _maxsim(query, p.multi[channel]) for p in points}


def _ids(points: list[PagePoint]) -> set[str]:
    return {p.point_id for p in points}


# --- fixtures --------------------------------------------------------------------------------

StoreFactory = Callable[[], VectorStore]
BACKENDS = ["edge", "server"]


def _open_backend(backend: str, directory: Path) -> VectorStore:
    if backend == "edge":
        return EdgeStore(directory / "index")
    return ServerStore(QdrantClient(path=str(directory / "qdrant")), "test")


def _filled(store: VectorStore) -> VectorStore:
    store.ensure_schema(VECTORS)
    store.upsert_pages(POINTS)
    return store


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def open_store(backend: str, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens the backend on the same on-disk location each time it is called (to test reopening)."""
    opened: list[VectorStore] = []

    def factory() -> VectorStore:
        opened.append(_open_backend(backend, tmp_path))
        return opened[-1]

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: StoreFactory) -> VectorStore:
    """A filled store that the test may change."""
    return _filled(open_store())


@pytest.fixture(scope="module", params=BACKENDS)
def shared_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VectorStore]:
    """A filled store shared by the tests that only read."""
    store = _filled(_open_backend(request.param, tmp_path_factory.mktemp(request.param)))
    yield store
    store.close()


def _book(book_id: str, **changes: object) -> BookRecord:
    book = BookRecord(book_id=book_id, title=f"Pathologie {book_id} — 2ᵉ édition", organ_systems=["liver", "lung"])
    return book.model_copy(update=changes)


# --- schema ----------------------------------------------------------------------------------


def test_fresh_store_is_empty_and_refuses_page_writes(open_store: StoreFactory) -> None:
    store = open_store()
    assert store.count_pages() == 0
    assert store.page_numbers("book-a") == set()
    assert store.get_pages([POINTS[0].point_id]) == {}
    assert store.search(ChannelQuery("pooled", QUERY[0], 5), NO_FILTER) == []
    assert store.get_meta() is None
    assert store.list_books() == []
    with pytest.raises(StoreError, match="ensure_schema"):
        store.upsert_pages(POINTS[:1])


def test_ensure_schema_is_idempotent(open_store: StoreFactory) -> None:
    store = open_store()
    store.ensure_schema(VECTORS)
    store.upsert_pages(POINTS)
    store.ensure_schema(list(VECTORS))
    assert store.count_pages() == len(POINTS)


@pytest.mark.parametrize(
    "changed",
    [
        [replace(VECTORS[0], dim=32), *VECTORS[1:]],
        [*VECTORS, VectorSpec("extra", "dense", 4)],
        VECTORS[:-1],
        [VECTORS[0], replace(VECTORS[1], datatype="float16"), *VECTORS[2:]],
        [*VECTORS[:-1], replace(VECTORS[-1], datatype="float16")],
        [*VECTORS[:4], replace(VECTORS[4], distance="cosine"), *VECTORS[5:]],
    ],
    ids=["dim", "added", "removed", "datatype", "turbo8", "distance"],
)
def test_ensure_schema_refuses_different_vectors(store: VectorStore, changed: list[VectorSpec]) -> None:
    with pytest.raises(StoreError, match="different vectors"):
        store.ensure_schema(changed)
    assert store.count_pages() == len(POINTS)


def test_point_ids_must_be_canonical_uuids(store: VectorStore) -> None:
    for bad_id in ("page-1", POINTS[0].point_id.upper()):
        with pytest.raises(StoreError, match="UUID"):
            store.upsert_pages([replace(POINTS[0], point_id=bad_id)])


# --- pages -----------------------------------------------------------------------------------


def test_upsert_then_count(shared_store: VectorStore) -> None:
    assert shared_store.count_pages() == len(POINTS)
    assert shared_store.count_pages("book-a") == PAGES_PER_BOOK
    assert shared_store.count_pages("no-such-book") == 0


def test_reupsert_replaces_instead_of_duplicating(store: VectorStore) -> None:
    renamed = [replace(p, record=p.record.model_copy(update={"title": "New title"})) for p in POINTS[:5]]
    store.upsert_pages(renamed)
    assert store.count_pages() == len(POINTS)
    assert {r.title for r in store.get_pages([p.point_id for p in renamed]).values()} == {"New title"}


def test_get_pages_round_trips_records(shared_store: VectorStore) -> None:
    wanted = [POINTS[0], POINTS[17], POINTS[29]]
    pages = shared_store.get_pages([p.point_id for p in wanted] + [str(uuid.uuid4())])
    assert pages == {p.point_id: p.record for p in wanted}


def test_page_numbers(shared_store: VectorStore) -> None:
    assert shared_store.page_numbers("book-b") == set(range(1, PAGES_PER_BOOK + 1))
    assert shared_store.page_numbers("no-such-book") == set()


def test_delete_book_pages_removes_only_that_book(store: VectorStore) -> None:
    store.delete_book_pages("book-a")
    assert store.count_pages("book-a") == 0
    assert store.page_numbers("book-a") == set()
    assert store.count_pages() == store.count_pages("book-b") == PAGES_PER_BOOK
    hits = store.search(ChannelQuery("pooled", QUERY[0], 50), NO_FILTER)
    assert {h.point_id for h in hits} == _ids(POINTS[PAGES_PER_BOOK:])


# --- search ----------------------------------------------------------------------------------


def test_dense_search_finds_the_page_itself(shared_store: VectorStore) -> None:
    target = POINTS[12]
    hits = shared_store.search(ChannelQuery("pooled", target.dense["pooled"], 3), NO_FILTER)
    assert len(hits) == 3
    assert hits[0].point_id == target.point_id
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_exact_maxsim_matches_numpy(shared_store: VectorStore) -> None:
    expected = _maxsim_scores(QUERY, "page")
    hits = shared_store.search(ChannelQuery("page", QUERY, 10), NO_FILTER)
    assert [h.point_id for h in hits] == _ranking(expected)[:10]
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.point_id], rel=1e-4)


def test_float16_multivector_scores_close_to_numpy(shared_store: VectorStore) -> None:
    query = np.random.default_rng(3).standard_normal((3, 8)).astype(np.float32)
    expected = _maxsim_scores(query, "text")
    hits = shared_store.search(ChannelQuery("text", query, 5), NO_FILTER)
    assert hits[0].point_id == _ranking(expected)[0]
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.point_id], abs=1e-2)


def test_turbo8_multivector_ranks_like_numpy(shared_store: VectorStore) -> None:
    """8-bit storage: scores within a few hundredths of exact MaxSim, so the ranking barely moves."""
    expected = _maxsim_scores(QUERY, "page")
    hits = shared_store.search(ChannelQuery("page_turbo8", QUERY, len(POINTS)), NO_FILTER)
    assert len(hits) == len(POINTS)
    assert [h.point_id for h in hits[:3]] == _ranking(expected)[:3]
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.point_id], abs=0.05)


def test_sparse_search_applies_idf(shared_store: VectorStore) -> None:
    query = SparseVector(indices=[COMMON_TERM, RARE_TERM], values=[1.0, 1.0])
    hits = shared_store.search(ChannelQuery("bm25", query, 5), NO_FILTER)
    assert hits[0].point_id == POINTS[RARE_PAGE].point_id
    assert hits[0].score > 2 * hits[1].score


def test_prefetch_then_maxsim_rerank(shared_store: VectorStore) -> None:
    pooled_query = _normalise(QUERY.mean(axis=0))
    pooled = {p.point_id: float(pooled_query @ _normalise(p.dense["pooled"])) for p in POINTS}
    candidates = _ranking(pooled)[:10]
    maxsim = _maxsim_scores(QUERY, "page")
    prefetch = ChannelQuery("pooled", QUERY.mean(axis=0), 10)
    hits = shared_store.search(ChannelQuery("page", QUERY, 5, prefetch=prefetch), NO_FILTER)
    assert [h.point_id for h in hits] == sorted(candidates, key=maxsim.__getitem__, reverse=True)[:5]


def _f16(vectors: np.ndarray) -> np.ndarray:
    return vectors.astype(np.float16).astype(np.float32)


def test_nested_prefetch_chain(shared_store: VectorStore) -> None:
    """FDE candidates -> centroid MaxSim -> exact MaxSim, as the visual channel asks; numpy does the same."""
    query_fde = FDE.query(QUERY)
    by_fde = _ranking({p.point_id: float(_f16(p.dense["fde"]) @ query_fde) for p in POINTS})[:20]
    centroids = {p.point_id: _maxsim(QUERY, _f16(p.multi["centroids"])) for p in POINTS}
    by_centroids = sorted(by_fde, key=centroids.__getitem__, reverse=True)[:8]
    maxsim = _maxsim_scores(QUERY, "page")
    expected = sorted(by_centroids, key=maxsim.__getitem__, reverse=True)[:5]
    assert expected != _ranking(maxsim)[:5]  # the stages do restrict the candidates

    stage_1 = ChannelQuery("fde", query_fde, 20)
    stage_2 = ChannelQuery("centroids", QUERY, 8, prefetch=stage_1)
    hits = shared_store.search(ChannelQuery("page", QUERY, 5, prefetch=stage_2), NO_FILTER)

    assert [h.point_id for h in hits] == expected
    for hit in hits:
        assert hit.score == pytest.approx(maxsim[hit.point_id], rel=1e-4)
    # The filter applies at every stage: only allowed pages, even from the widest one.
    book_b = PageFilter(book_ids=["book-b"])
    filtered = shared_store.search(ChannelQuery("page", QUERY, 30, prefetch=stage_2), book_b)
    assert 0 < len(filtered) <= 8 and {h.point_id for h in filtered} <= _ids(POINTS[PAGES_PER_BOOK:])


@pytest.mark.parametrize(
    ("page_filter", "allowed"),
    [
        (PageFilter(book_ids=["book-b"]), lambda r: r.book_id == "book-b"),
        (PageFilter(organ_systems=["liver", "kidney"]), lambda r: {"liver", "kidney"} & set(r.organ_systems)),
        (PageFilter(["book-a"], ["heart"]), lambda r: r.book_id == "book-a" and "heart" in r.organ_systems),
        (PageFilter(excluded_page_kinds=["front", "contents", "index"]), lambda r: r.page_kind == "body"),
        (PageFilter(["book-b"], excluded_page_kinds=["index"]), lambda r: r.book_id == "book-b" and r.page_kind == "body"),
    ],
    ids=["book", "organ", "both", "body-only", "book-body-only"],
)
def test_filters(shared_store: VectorStore, page_filter: PageFilter, allowed: Callable[[PageRecord], bool]) -> None:
    expected = {p.point_id for p in POINTS if allowed(p.record)}
    assert 0 < len(expected) < len(POINTS)
    plain = shared_store.search(ChannelQuery("pooled", QUERY[0], 50), page_filter)
    prefetch = ChannelQuery("pooled", QUERY[0], 50)
    reranked = shared_store.search(ChannelQuery("page", QUERY, 50, prefetch=prefetch), page_filter)
    assert {h.point_id for h in plain} == expected
    assert {h.point_id for h in reranked} == expected


# --- catalog ---------------------------------------------------------------------------------


def test_books_put_get_list_delete(open_store: StoreFactory) -> None:
    store = open_store()  # the catalog works before the pages schema exists
    assert store.get_book("book-a") is None
    store.put_book(_book("book-b"))
    store.put_book(_book("book-a"))
    store.put_book(_book("book-a", status="complete", page_count=15))
    assert store.get_book("book-a") == _book("book-a", status="complete", page_count=15)
    assert [b.book_id for b in store.list_books()] == ["book-a", "book-b"]
    store.delete_book("book-a")
    assert store.get_book("book-a") is None
    assert store.list_books() == [_book("book-b")]


def test_meta_put_get(store: VectorStore) -> None:
    assert store.get_meta() is None
    meta = {"page": {"name": "vidore/colqwen2.5-v0.2", "dim": 128}, "text": {"name": "MiniLM", "dim": 384}}
    store.put_meta(meta)
    store.put_meta(meta | {"version": 2})
    assert store.get_meta() == meta | {"version": 2}
    assert store.list_books() == []


# --- figures ---------------------------------------------------------------------------------

FIGURE_VECTORS = [VectorSpec("page", "multi", 16, index=False), VectorSpec("fde", "dense", FDE.dim, distance="dot")]


def _with_figures() -> list[PagePoint]:
    """The pages, every third with as many figures as its page number has threes (up to 4), each crop
    its own multivector; figure points carry the page fields a search filters on."""
    rng = np.random.default_rng(5)
    pages = []
    for n, point in enumerate(POINTS):
        figures = []
        for figure in range(1, (n % 3 == 0) * (1 + n % 4) + 1):
            tokens = rng.standard_normal((int(rng.integers(3, 9)), 16)).astype(np.float32)
            record = FigurePointRecord(
                book_id=point.record.book_id, page=point.record.page, figure=figure, page_point_id=point.point_id,
                organ_systems=point.record.organ_systems, page_kind=point.record.page_kind,
            )  # fmt: skip
            figure_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{point.point_id}/{figure}"))
            figures.append(FigurePoint(figure_id, record, {"fde": FDE.page(tokens)}, {"page": tokens}))
        pages.append(replace(point, figures=figures))
    return pages


FIGURE_PAGES = _with_figures()
FIGURES = [figure for page in FIGURE_PAGES for figure in page.figures]


def _figure_ranking(query: np.ndarray, figures: list[FigurePoint] = FIGURES) -> list[ScoredFigure]:
    scored = [ScoredFigure(f.record.page_point_id, f.record.figure, _maxsim(query, f.multi["page"])) for f in figures]
    return sorted(scored, key=lambda hit: -hit.score)


@pytest.fixture
def figure_store(open_store: StoreFactory) -> VectorStore:
    store = open_store()
    store.ensure_schema(VECTORS, FIGURE_VECTORS)
    store.upsert_pages(FIGURE_PAGES)
    return store


def test_figure_search_ranks_crops_by_maxsim_and_names_their_pages(figure_store: VectorStore) -> None:
    assert len(FIGURES) > 10
    hits = figure_store.search_figures(ChannelQuery("page", QUERY, 6, prefetch=ChannelQuery("fde", FDE.query(QUERY), 40)), NO_FILTER)
    expected = _figure_ranking(QUERY)[:6]
    assert [(h.page_point_id, h.figure) for h in hits] == [(h.page_point_id, h.figure) for h in expected]
    assert [h.score for h in hits] == pytest.approx([h.score for h in expected], abs=1e-4)
    assert figure_store.count_pages() == len(POINTS)  # figures are not pages
    assert {h.point_id for h in figure_store.search(ChannelQuery("page", QUERY, 100), NO_FILTER)} == _ids(POINTS)


def test_figure_search_applies_the_page_filter(figure_store: VectorStore) -> None:
    page_filter = PageFilter(book_ids=["book-b"], excluded_page_kinds=["index"])
    allowed = [f for f in FIGURES if f.record.book_id == "book-b" and f.record.page_kind != "index"]
    assert 0 < len(allowed) < len(FIGURES)
    hits = figure_store.search_figures(ChannelQuery("page", QUERY, 100), page_filter)
    assert {(h.page_point_id, h.figure) for h in hits} == {(f.record.page_point_id, f.record.figure) for f in allowed}


def test_deleting_a_books_pages_removes_its_figures(figure_store: VectorStore) -> None:
    figure_store.delete_book_pages("book-a")
    hits = figure_store.search_figures(ChannelQuery("page", QUERY, 100), NO_FILTER)
    book_b = {p.point_id for p in FIGURE_PAGES if p.record.book_id == "book-b"}
    assert hits and {h.page_point_id for h in hits} <= book_b
    assert len(hits) == sum(len(p.figures) for p in FIGURE_PAGES if p.point_id in book_b)


def test_an_index_without_figures_gets_them_added_and_keeps_them(open_store: StoreFactory) -> None:
    store = _filled(open_store())  # made before figures existed
    assert store.search_figures(ChannelQuery("page", QUERY, 5), NO_FILTER) == []
    with pytest.raises(StoreError, match="figure"):
        store.upsert_pages(FIGURE_PAGES[:1])
    store.ensure_schema(VECTORS, FIGURE_VECTORS)
    assert store.count_pages() == len(POINTS)
    store.upsert_pages(FIGURE_PAGES)
    store.close()
    reopened = open_store()
    reopened.ensure_schema(VECTORS, FIGURE_VECTORS)
    hits = reopened.search_figures(ChannelQuery("page", QUERY, 3), NO_FILTER)
    assert [(h.page_point_id, h.figure) for h in hits] == [(h.page_point_id, h.figure) for h in _figure_ranking(QUERY)[:3]]
    with pytest.raises(StoreError, match="different vectors"):
        reopened.ensure_schema(VECTORS, FIGURE_VECTORS[:1])


# --- lifecycle -------------------------------------------------------------------------------


def test_data_survives_close_and_reopen(open_store: StoreFactory) -> None:
    store = open_store()
    store.ensure_schema(VECTORS)
    store.upsert_pages(POINTS)
    store.put_book(_book("book-a"))
    store.put_meta({"schema": 1})
    store.close()

    reopened = open_store()
    assert reopened.count_pages() == len(POINTS)
    assert reopened.get_book("book-a") == _book("book-a")
    assert reopened.get_meta() == {"schema": 1}
    hits = reopened.search(ChannelQuery("page", QUERY, 3), NO_FILTER)
    assert [h.point_id for h in hits] == _ranking(_maxsim_scores(QUERY, "page"))[:3]
    reopened.ensure_schema(VECTORS)
    with pytest.raises(StoreError):
        reopened.ensure_schema(VECTORS[:-1])


_WRITE_THEN_DIE = """
import os, sys
from pathlib import Path
sys.path.insert(0, {tests_dir!r})
from test_store_conformance import POINTS, VECTORS, _open_backend
store = _open_backend({backend!r}, Path({directory!r}))
store.ensure_schema(VECTORS)
store.upsert_pages(POINTS)
store.put_meta({{"schema": 1}})
os._exit(0)  # no close(), no flush at exit
"""


def test_writes_survive_a_killed_process(backend: str, open_store: StoreFactory, tmp_path: Path) -> None:
    script = _WRITE_THEN_DIE.format(tests_dir=str(Path(__file__).parent), backend=backend, directory=str(tmp_path))
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    store = open_store()
    assert store.count_pages() == len(POINTS)
    assert store.get_meta() == {"schema": 1}


def test_drop_removes_everything(figure_store: VectorStore, tmp_path: Path) -> None:
    store = figure_store
    store.put_book(_book("book-a"))
    store.put_meta({"schema": 1})
    store.drop()
    assert store.count_pages() == 0
    assert store.search_figures(ChannelQuery("page", QUERY, 5), NO_FILTER) == []
    assert store.get_meta() is None
    assert store.list_books() == []
    assert not (tmp_path / "index" / "pages").exists()
    assert not (tmp_path / "index" / "catalog").exists()
    assert not (tmp_path / "index" / "figures").exists()
    store.ensure_schema([replace(VECTORS[0], dim=32)])  # a rebuilt index may use other encoders
    assert store.count_pages() == 0
