"""Page search: one ranked lookup per channel, then score fusion.

Channels:
- `bm25`: lexical, sparse BM25 with engine-side IDF;
- `text`: the query's sentence embedding against each page's text chunks (best chunk);
- `page`: the text query embedded by the page encoder; candidates by the pages' FDEs, narrowed by
  their k-means centroids, then exact MaxSim on the page multivector (`visual_query`);
- `image`: the user's image embedded by the page encoder, same chain (joint queries rank by text
  and by the image at once);
- `figure`: the same image against the pages' figure crops, same chain; a page scores as its best
  figure, and its hit names that figure (`matched_figure`).

Fusion is distribution-based: each channel's candidate scores are scaled by their own mean +- 3 std
(as Qdrant's DBSF does). By default (`peaked`) each channel's weight is also multiplied, per query,
by how far its best score stands above its list (the top score's z-score): a channel with a clear
winner for this question counts more than one with a flat list, whatever the book. `weighted` uses
the configured weights alone, `rrf` reciprocal ranks. A page missing from a channel's list takes
that list's lowest score, a bound on what it would have had.

`search_pages` answers one query; `search_many` answers several at once (an agent's round): their
texts embedded in one encoder call per channel, the catalog of books read once, the lookups on
worker threads, and each query's failure reported beside the others' results.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from rag.coverage import terms_occur
from rag.encoders import BM25, PAGE, PAGE_CENTROIDS, PAGE_FDE, TEXT
from rag.encoders.multivector import FixedDimensionalEncoder
from rag.models import OUTSIDE_BODY_PAGES, BookRecord, PageHit, SparseVector
from rag.page_index import PageIndex
from rag.settings import RagSettings
from rag.encoders.sparse import merge_weighted
from rag.store import ChannelQuery, PageFilter, ScoredFigure, ScoredId
from rag.terminology import find_alternatives

log = logging.getLogger(__name__)

TEXT_CHANNELS = ("bm25", "text", "page")
IMAGE_CHANNELS = ("image", "figure")
ALL_CHANNELS = (*TEXT_CHANNELS, *IMAGE_CHANNELS)
SNIPPET_CHARS = 320
VISUAL_CHANNELS = ("page", *IMAGE_CHANNELS)
# Visual candidate stages (BENCHMARKS.md, "Retrieval at scale"): at least 1000 pages by FDE, then the
# channel's list (at least 50) by centroid MaxSim, which exact MaxSim only reorders. In a larger
# library both stages keep a share of it (2 % and 0.1 %): with fixed counts recall@10 fell from 0.98
# at 10 000 pages to 0.93 at 100 000; 2 000 -> 100 held 0.97 there.
FDE_CANDIDATES, FDE_FACTOR, FDE_SHARE = 1000, 10, 50  # FDE_SHARE: one FDE candidate per 50 pages
CENTROID_CANDIDATES, CENTROID_SHARE = 50, 1000  # one centroid candidate per 1000 pages
# Expansion terms (other names and spellings) count less than the user's own words.
EXPANSION_WEIGHT = 0.5


class SearchError(ValueError):
    """A search that cannot be served as asked (the message says why)."""


@dataclass
class SearchQuery:
    text: str = ""
    image: Image.Image | None = None
    books: list[str] = field(default_factory=list)
    organ_systems: list[str] = field(default_factory=list)
    top_k: int | None = None
    channels: tuple[str, ...] | None = None  # None: every channel the query and the index allow
    all_pages: bool = False  # False: front matter, contents and index pages are left out


@dataclass
class SearchResult:
    """One query's outcome in `search_many`: its pages, or why it could not be served."""

    hits: list[PageHit]
    error: str = ""  # a SearchError's message
    seconds: float = 0.0  # the query's own lookups (the shared embedding call excluded)


Embedded = dict[str, np.ndarray]  # channel (or "image") -> the query's vector(s), computed ahead


def search_pages(index: PageIndex, query: SearchQuery) -> list[PageHit]:
    """The best pages for a text and/or image query, best first. Raises SearchError."""
    return _search(index, query, {}, index.books())


def search_many(index: PageIndex, queries: Sequence[SearchQuery], workers: int = 1) -> list[SearchResult]:
    """The results of several queries, in order; a query that cannot be served gets its error."""
    books = index.books()
    embedded = _embed_ahead(index, queries)

    def run(position: int) -> SearchResult:
        started = time.monotonic()
        try:
            hits, error = _search(index, queries[position], embedded[position], books), ""
        except SearchError as exc:
            hits, error = [], str(exc)
        return SearchResult(hits, error, time.monotonic() - started)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(queries))), thread_name_prefix="search") as pool:
        return list(pool.map(run, range(len(queries))))


def _search(index: PageIndex, query: SearchQuery, embedded: Embedded, books: list[BookRecord]) -> list[PageHit]:
    settings = index.settings
    top_k = query.top_k or settings.top_k
    channels = _channels(index, query)
    page_filter = _page_filter(query, books)
    if page_filter is None:
        return []
    library_pages = sum(book.page_count for book in books if book.complete)
    if query.image is not None and set(channels) & set(IMAGE_CHANNELS) and "image" not in embedded:
        embedded = embedded | {"image": index.encoders.page.embed_query_images([query.image])[0]}
    rankings, matched_figures = {}, {}
    for name in channels:
        limit = _channel_limit(settings, name, top_k)
        lookup = _channel_query(index, query, embedded, name, limit, page_filter, library_pages)
        if name == "figure":
            rankings[name], matched_figures = _pages_by_their_figures(index.store.search_figures(lookup, page_filter), limit)
        else:
            rankings[name] = index.store.search(lookup, page_filter)
    fused = fuse(rankings, _weights(index, channels), settings.fusion, settings.rrf_k)[:top_k]
    records = index.store.get_pages([point_id for point_id, _ in fused])
    hits = []
    for point_id, score in fused:
        record = records[point_id]
        hits.append(
            PageHit(
                book_id=record.book_id,
                title=record.title,
                page=record.page,
                page_label=record.page_label,
                section=" > ".join(record.section_path),
                section_path=record.section_path,
                score=score,
                channel_scores=_channel_values(rankings, point_id, lambda rank, hit: hit.score),
                channel_ranks=_channel_values(rankings, point_id, lambda rank, hit: rank),
                snippet=make_snippet(record.text, query.text),
                image_key=record.image_key,
                words_key=record.words_key,
                figures=record.figures,
                matched_figure=matched_figures.get(point_id, 0),
                page_kind=record.page_kind,
                text=record.text,
            )
        )
    return hits


def _pages_by_their_figures(figures: list[ScoredFigure], limit: int) -> tuple[list[ScoredId], dict[str, int]]:
    """The pages of a figure ranking, each scored as its best figure, and that figure's number."""
    pages: dict[str, ScoredFigure] = {}
    for figure in figures:  # best first: a page's first figure here is its best
        pages.setdefault(figure.page_point_id, figure)
    ranked = list(pages.values())[:limit]
    return [ScoredId(f.page_point_id, f.score) for f in ranked], {f.page_point_id: f.figure for f in ranked}


def _channel_limit(settings: RagSettings, channel: str, top_k: int) -> int:
    """How many candidates a channel brings to fusion (never fewer than the search returns)."""
    wanted = settings.visual_prefetch_limit if channel in VISUAL_CHANNELS else settings.prefetch_limit
    return max(wanted, top_k)


def _channels(index: PageIndex, query: SearchQuery) -> list[str]:
    if not query.text.strip() and query.image is None:
        raise SearchError("a search needs a text query, an image, or both")
    asked = query.channels or ALL_CHANNELS
    unknown = set(asked) - set(ALL_CHANNELS)
    if unknown:
        raise SearchError(f"unknown channel(s) {sorted(unknown)}; choose from {list(ALL_CHANNELS)}")
    visual = index.encoders.page is not None
    if query.image is not None and not visual and (query.channels is None or set(asked) & set(IMAGE_CHANNELS)):
        raise SearchError(
            "image search needs a page encoder, and the visual channel is off "
            "(set PATHORAG_PAGE_ENCODER to a ColPali-family model and reindex)"
        )
    usable = []
    for name in asked:
        if name in TEXT_CHANNELS and not query.text.strip():
            continue
        if name in IMAGE_CHANNELS and query.image is None:
            continue
        if name in VISUAL_CHANNELS and not visual:
            continue
        usable.append(name)
    if not usable:
        raise SearchError(f"none of the channels {list(asked)} can serve this query")
    return usable


def _embed_ahead(index: PageIndex, queries: Sequence[SearchQuery]) -> list[Embedded]:
    """The texts of several queries embedded in one encoder call per channel, which costs far less
    than one call per query, and their images in one page-encoder call, each distinct image once (an
    agent's round sends the question's image with several queries)."""
    embedded: list[Embedded] = [{} for _ in queries]
    with_image = [n for n, q in enumerate(queries) if q.image is not None and (q.channels is None or set(q.channels) & set(IMAGE_CHANNELS))]
    if index.encoders.page is not None and with_image:
        images = list({id(queries[n].image): queries[n].image for n in with_image}.values())
        by_image = dict(zip(map(id, images), index.encoders.page.embed_query_images(images)))
        for n in with_image:
            embedded[n]["image"] = by_image[id(queries[n].image)]
    encoders = {"text": index.encoders.text, "page": index.encoders.page}
    for channel, encoder in encoders.items():
        wanted = [n for n, q in enumerate(queries) if q.text.strip() and (q.channels is None or channel in q.channels)]
        if encoder is None or not wanted:
            continue
        texts = [queries[n].text for n in wanted]
        vectors = encoder.embed_documents(texts) if channel == "text" else encoder.embed_queries(texts)
        for n, vector in zip(wanted, vectors):
            embedded[n][channel] = vector
    return embedded


def _page_filter(query: SearchQuery, books: list[BookRecord]) -> PageFilter | None:
    """Only books whose indexing completed are searchable, and only their body pages unless the query
    asks for all pages. None: nothing can match."""
    complete = {book.book_id for book in books if book.complete}
    if query.books:
        unknown = set(query.books) - {book.book_id for book in books}
        if unknown:
            raise SearchError(f"unknown book id(s): {', '.join(sorted(unknown))}")
        complete &= set(query.books)
    if not complete:
        return None
    excluded = [] if query.all_pages else list(OUTSIDE_BODY_PAGES)
    return PageFilter(book_ids=sorted(complete), organ_systems=list(query.organ_systems), excluded_page_kinds=excluded)


def _channel_query(
    index: PageIndex, query: SearchQuery, embedded: Embedded, channel: str, limit: int, page_filter: PageFilter,
    library_pages: int,
) -> ChannelQuery:
    encoders = index.encoders
    if channel == "bm25":
        return ChannelQuery(BM25, _lexical_query(index, query.text, page_filter), limit)
    if channel == "text":
        vector = embedded.get("text")
        return ChannelQuery(TEXT, (encoders.text.embed_query(query.text) if vector is None else vector)[None, :], limit)
    if channel == "page":
        vectors = embedded.get("page")
        if vectors is None:
            vectors = encoders.page.embed_queries([query.text])[0]
    else:  # image, figure: the image embedded once for both
        vectors = embedded["image"]
    return visual_query(vectors, encoders.page.fde, limit, library_pages)


def visual_query(tokens: np.ndarray, fde: FixedDimensionalEncoder, limit: int, library_pages: int = 0) -> ChannelQuery:
    """The visual channel's lookup for an (n, dim) query multivector: `limit` pages by exact MaxSim.

    Exact MaxSim over every page grows with the corpus (seconds at 10 000 pages), so it only
    reranks candidates: the pages whose FDE scores best (one dense scan, 10x wider than the next
    stage, and at least one page in 50 of the library), narrowed by MaxSim against their 16
    centroids (at least 50 pages, `limit`, and one in 1000 of the library).
    """
    centroid_limit = max(CENTROID_CANDIDATES, limit, library_pages // CENTROID_SHARE)
    fde_limit = max(FDE_CANDIDATES, FDE_FACTOR * centroid_limit, library_pages // FDE_SHARE)
    by_fde = ChannelQuery(PAGE_FDE, fde.query(tokens), fde_limit)
    by_centroids = ChannelQuery(PAGE_CENTROIDS, tokens, centroid_limit, prefetch=by_fde)
    return ChannelQuery(PAGE, tokens, limit, prefetch=by_centroids)


def _lexical_query(index: PageIndex, text: str, page_filter: PageFilter) -> SparseVector:
    """BM25 query; where a query term is absent from the searched pages, its other names join at lower weight."""
    sparse = index.encoders.sparse
    vector = sparse.embed_query(text)
    if not index.settings.query_expansion:
        return vector
    own = set(vector.indices)
    extra: dict[int, float] = {}
    for alternatives in find_alternatives(text):
        if terms_occur(index, alternatives.found, page_filter):
            continue
        for term in sparse.embed_query(" ".join(alternatives.others)).indices:
            if term not in own:
                extra[term] = EXPANSION_WEIGHT
    if not extra:
        return vector
    return merge_weighted([(vector, 1.0), (SparseVector(list(extra), list(extra.values())), 1.0)])


def _weights(index: PageIndex, channels: list[str]) -> dict[str, float]:
    s = index.settings
    table = {
        "bm25": s.weight_bm25, "text": s.weight_text, "page": s.weight_page, "image": s.weight_image,
        "figure": s.weight_figure,
    }  # fmt: skip
    return {name: table[name] for name in channels}


def fuse(
    rankings: dict[str, list[ScoredId]], weights: dict[str, float], method: str, rrf_k: int = 60
) -> list[tuple[str, float]]:
    """Fuse per-channel rankings into one list of (point id, score), best first."""
    candidates = sorted({hit.point_id for hits in rankings.values() for hit in hits})
    totals = dict.fromkeys(candidates, 0.0)
    for channel, hits in rankings.items():
        if not hits:
            continue
        weight = weights[channel]
        if method == "rrf":
            for rank, hit in enumerate(hits, start=1):
                totals[hit.point_id] += weight / (rrf_k + rank)
            continue
        scores = np.array([hit.score for hit in hits])
        if method == "peaked":
            weight *= peakedness(scores)
        low, high = scores.mean() - 3 * scores.std(), scores.mean() + 3 * scores.std()
        span = high - low if high > low else 1.0
        by_id = {hit.point_id: hit.score for hit in hits}
        floor = scores.min()
        for point_id in candidates:
            totals[point_id] += weight * (by_id.get(point_id, floor) - low) / span
    # Ties (equal fused scores) keep a stable, reproducible order.
    return sorted(totals.items(), key=lambda item: (-item[1], item[0]))


def peakedness(scores: np.ndarray) -> float:
    """How many standard deviations the best score stands above the list's mean (1 for lists too
    short to tell: the value a list of two always has)."""
    spread = scores.std()
    if len(scores) < 2 or spread == 0:
        return 1.0
    return max(0.0, float((scores.max() - scores.mean()) / spread))


def _channel_values(rankings: dict[str, list[ScoredId]], point_id: str, value) -> dict:
    out = {}
    for channel, hits in rankings.items():
        for rank, hit in enumerate(hits, start=1):
            if hit.point_id == point_id:
                out[channel] = value(rank, hit)
                break
    return out


_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")
_SENTENCE_END = re.compile(r"[.;:!?][\"')\]]*$")
HEADING_WORDS = 12  # a line of at most this many words that ends no sentence is a heading
_STOP = frozenset(
    "the and for are was were with that this which what when where who whom how why does did from into "
    "than then they them their there these those have has had not but its his her book page text".split()
)


def _query_terms(text: str) -> set[str]:
    return {w.lower()[:6] for w in _WORD.findall(text) if w.lower() not in _STOP}


def make_snippet(page_text: str, query_text: str, max_chars: int = SNIPPET_CHARS) -> str:
    """The passage of the page that shares most words with the query, matched words in **bold**: its
    best sentence (its heading's words counting with it) and the ones after it up to `max_chars`,
    within one run of text between headings."""
    terms = _query_terms(query_text)
    runs = _sentence_runs(page_text)
    sentences = [(run, heading, sentence) for run, (heading, run_sentences) in enumerate(runs) for sentence in run_sentences]
    if not sentences:
        return ""

    def matches(heading: str, sentence: str) -> int:
        return len({w.lower()[:6] for w in _WORD.findall(f"{heading} {sentence}")} & terms)

    best = max(range(len(sentences)), key=lambda i: (matches(*sentences[i][1:]), -i)) if terms else 0
    run, _, passage = sentences[best]
    for follower_run, _, follower in sentences[best + 1 :]:
        if follower_run != run or len(passage) + len(follower) + 1 > max_chars:
            break
        passage += " " + follower
    if len(passage) > max_chars:
        passage = passage[: max_chars - 1].rsplit(" ", 1)[0] + "…"
    if not terms:
        return passage
    return _WORD.sub(lambda m: f"**{m.group(0)}**" if m.group(0).lower()[:6] in terms else m.group(0), passage)


def _sentence_runs(page_text: str) -> list[tuple[str, list[str]]]:
    """The page's sentences in runs between headings, each with the heading before it. The text has one
    block a line; a short line that ends no sentence (a heading, a running header) starts a run and is
    no sentence of it, unless the page has nothing else."""
    blocks = [" ".join(line.split()) for line in page_text.split("\n") if line.strip()]
    runs: list[tuple[str, list[str]]] = [("", [])]
    for block in blocks:
        if len(block.split()) <= HEADING_WORDS and not _SENTENCE_END.search(block):
            runs.append((block, []))
        else:
            runs[-1][1].extend(s for s in re.split(r"(?<=[.;:!?])\s+", block) if s)
    runs = [run for run in runs if run[1]]
    return runs or [("", [block]) for block in blocks]


def snippet_text(snippet: str) -> str:
    """A snippet's words as the page gives them: without the bold marks and the ellipsis."""
    return snippet.replace("**", "").removesuffix("…")
