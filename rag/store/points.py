"""Conversions both backends share: catalog ids, page ids, vectors as plain lists."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from rag.models import PagePoint, SparseVector
from rag.store.base import ChannelQuery, StoreError

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


def dense_vectors(point: PagePoint) -> dict[str, Any]:
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


def non_empty_sparse(point: PagePoint) -> dict[str, SparseVector]:
    return {name: sparse for name, sparse in point.sparse.items() if sparse.indices}
