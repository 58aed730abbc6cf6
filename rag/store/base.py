"""The small interface every Qdrant backend implements (embedded qdrant-edge, Qdrant server).

Two collections hold the library: pages (one point per page, every channel's vectors) and figures
(one point per figure crop, the visual channel's vectors only, each pointing at its page), plus a
small catalog of books and the index metadata.

Fusion happens in `rag.search`; a backend only answers one channel query at a time, so both
backends behave the same and the conformance suite can compare them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from rag.models import BookRecord, PagePoint, PageRecord, SparseVector

VectorKind = Literal["dense", "multi", "sparse"]
Distance = Literal["cosine", "dot"]
# Storage of a vector's values. "turbo8": Qdrant's 8-bit TurboQuant primary storage (a random rotation,
# then 8 bits per dimension; no float copy is kept), about half of float16; dense and multi only.
Datatype = Literal["float32", "float16", "turbo8"]


@dataclass(frozen=True)
class VectorSpec:
    """One named vector of the pages collection."""

    name: str
    kind: VectorKind
    dim: int = 0  # 0 for sparse
    index: bool = True  # False: no HNSW (the page multivector is only ever used for exact rerank)
    datatype: Datatype = "float32"
    distance: Distance = "cosine"  # "dot" for vectors whose norm carries meaning (an FDE); not for sparse

    def __post_init__(self) -> None:
        if self.kind == "sparse" and self.datatype == "turbo8":
            raise ValueError(f"sparse vector {self.name!r} cannot be stored as turbo8")


@dataclass(frozen=True)
class PageFilter:
    """Restricts a search; empty lists mean no restriction."""

    book_ids: list[str] = field(default_factory=list)
    organ_systems: list[str] = field(default_factory=list)
    excluded_page_kinds: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ChannelQuery:
    """One ranked lookup in one named vector.

    `vector` is (d,) for dense, (n, d) for multi, a SparseVector for sparse.
    `prefetch`, if given, is run first and `vector` only reranks its candidates; a prefetch may
    have its own prefetch, so stages chain, widest first (the visual channel: FDE candidates ->
    centroid MaxSim -> exact MaxSim on the page multivector). The filter applies at every stage.
    """

    using: str
    vector: np.ndarray | SparseVector
    limit: int
    prefetch: ChannelQuery | None = None


@dataclass(frozen=True)
class ScoredId:
    point_id: str
    score: float


@dataclass(frozen=True)
class ScoredFigure:
    """A figure crop found by a search: its page's point id and its place among the page's figures."""

    page_point_id: str
    figure: int  # 1-based
    score: float


class StoreError(RuntimeError):
    """The vector store could not do what was asked (with a reason a user can act on)."""


class VectorStore(Protocol):
    """Pages and figures collections plus a small catalog (books, index metadata)."""

    def ensure_schema(self, vectors: list[VectorSpec], figure_vectors: list[VectorSpec] = ()) -> None:
        """Create the collections (idempotent; the figures one only with `figure_vectors`, and added to
        an index made before it). Raises StoreError if an existing one differs."""

    def upsert_pages(self, points: list[PagePoint]) -> None:
        """Store pages and their figure points, the figures first: a stored page has its figures."""

    def delete_book_pages(self, book_id: str) -> None:
        """Remove the book's pages and their figures."""

    def count_pages(self, book_id: str | None = None) -> int: ...

    def page_numbers(self, book_id: str) -> set[int]:
        """Page numbers of `book_id` present in the store (to resume an interrupted job)."""

    def search(self, query: ChannelQuery, page_filter: PageFilter) -> list[ScoredId]: ...

    def search_figures(self, query: ChannelQuery, page_filter: PageFilter) -> list[ScoredFigure]:
        """A visual lookup over the figure crops (none when the index has no figures collection); the
        filter applies to their pages' fields."""

    def get_pages(self, point_ids: list[str]) -> dict[str, PageRecord]: ...

    def put_book(self, book: BookRecord) -> None: ...

    def get_book(self, book_id: str) -> BookRecord | None: ...

    def list_books(self) -> list[BookRecord]: ...

    def delete_book(self, book_id: str) -> None:
        """Remove the book record (its pages are removed with delete_book_pages)."""

    def get_meta(self) -> dict | None:
        """Index metadata (which encoders built the index), or None for a new index."""

    def put_meta(self, meta: dict) -> None: ...

    def drop(self) -> None:
        """Delete every collection (used by reindex)."""

    def close(self) -> None: ...
