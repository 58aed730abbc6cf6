"""What both backends share: catalog ids and records, page ids, vectors as plain lists, filter terms."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from rag.models import BookRecord, FigurePoint, PagePoint, SparseVector
from rag.store.base import ChannelQuery, PageFilter, ScoredFigure, StoreError

_CATALOG_NAMESPACE = uuid.UUID("5b0d7a53-8f6e-4c3e-9a51-6f1f3f6c2a10")


def catalog_id(key: str) -> str:
    return str(uuid.uuid5(_CATALOG_NAMESPACE, key))


def check_point_id(point_id: str) -> None:
    try:
        canonical = str(uuid.UUID(point_id))
    except ValueError:
        canonical = ""
    if canonical != point_id:
        raise StoreError(f"Page point id {point_id!r} is not a canonical (lowercase, hyphenated) UUID string.")


def as_list(array: np.ndarray, ndim: int) -> list:
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != ndim:
        raise StoreError(f"Expected a {ndim}-d vector array, got shape {array.shape}.")
    return array.tolist()


def dense_vectors(point: PagePoint | FigurePoint) -> dict[str, Any]:
    """The point's dense and multi vectors as lists, after checking its id."""
    check_point_id(point.point_id)
    vectors: dict[str, Any] = {name: as_list(array, 1) for name, array in point.dense.items()}
    return vectors | {name: as_list(array, 2) for name, array in point.multi.items()}


def query_list(query: ChannelQuery) -> list:
    """A dense (d,) or multi (n, d) query vector as a list."""
    vector = np.asarray(query.vector, dtype=np.float32)
    if vector.ndim not in (1, 2):
        raise StoreError(f"Query vector for {query.using!r} must be (d,) or (n, d), got shape {vector.shape}.")
    return vector.tolist()


def figure_points(points: list[PagePoint]) -> list[FigurePoint]:
    return [figure for point in points for figure in point.figures]


def non_empty_sparse(point: PagePoint | FigurePoint) -> dict[str, SparseVector]:
    """The point's sparse vectors that have terms (a figure point has none)."""
    if isinstance(point, FigurePoint):
        return {}
    return {name: sparse for name, sparse in point.sparse.items() if sparse.indices}


FIGURE_HIT_FIELDS = ["page_point_id", "figure"]  # the payload a figure search returns


def scored_figure(payload: dict[str, Any], score: float) -> ScoredFigure:
    """A figure hit from its FIGURE_HIT_FIELDS payload."""
    return ScoredFigure(payload["page_point_id"], int(payload["figure"]), float(score))


def filter_terms(page_filter: PageFilter) -> tuple[list[tuple[str, list[str]]], list[tuple[str, list[str]]]]:
    """The filter as (payload key, any of these values) terms that a page must and must not match.

    Excluded page kinds are a `must_not`, so pages indexed before page kinds existed (no `page_kind`
    field) still match.
    """
    must = [(key, list(values)) for key, values in (("book_id", page_filter.book_ids),
                                                     ("organ_systems", page_filter.organ_systems)) if values]
    must_not = [("page_kind", list(page_filter.excluded_page_kinds))] if page_filter.excluded_page_kinds else []
    return must, must_not


class CatalogRecords:
    """Book records and the index metadata, kept in the catalog through a backend's `_put_catalog`
    (key, kind, data) and `_get_catalog` (key -> data or None)."""

    def _put_catalog(self, key: str, kind: str, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def _get_catalog(self, key: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def put_book(self, book: BookRecord) -> None:
        self._put_catalog(f"book:{book.book_id}", "book", book.model_dump(mode="json"))

    def get_book(self, book_id: str) -> BookRecord | None:
        data = self._get_catalog(f"book:{book_id}")
        return BookRecord.model_validate(data) if data is not None else None

    def get_meta(self) -> dict | None:
        return self._get_catalog("meta")

    def put_meta(self, meta: dict) -> None:
        self._put_catalog("meta", "meta", meta)
