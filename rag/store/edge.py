"""Embedded backend: qdrant-edge shards (`pages/`, `figures/`, `catalog/`) in one directory.

One process at a time: the directory is locked (`lock`, released when the store closes or its
process ends), so a second process is refused with the reason instead of racing the first.

Segments are never optimised: `optimize()` builds HNSW graphs, which on page multivectors ran for
minutes, and plain segments already answer the chained prefetch + MaxSim rerank in milliseconds
(BENCHMARKS.md, "Retrieval at scale").
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from rag.disk import free_mib
from rag.models import BookRecord, FigurePoint, PagePoint, PageRecord, SparseVector
from rag.store.base import ChannelQuery, PageFilter, ScoredFigure, ScoredId, StoreError, VectorSpec
from rag.store.points import (
    FIGURE_HIT_FIELDS,
    CatalogRecords,
    catalog_id,
    dense_vectors,
    figure_points,
    filter_terms,
    non_empty_sparse,
    query_list,
    scored_figure,
)

_INDEXED_FIELDS = ("book_id", "organ_systems", "page_kind")
# The engine needs at least one vector config; catalog points carry no vectors at all.
_CATALOG_PLACEHOLDER = qe.EdgeConfig(sparse_vectors={"placeholder": qe.EdgeSparseVectorParams()})
_SCROLL_PAGE = 1000
# m=0 keeps the optimiser from ever building a graph on a vector searched only exactly.
_NO_HNSW = qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000)


# qdrant-edge writes through memory-mapped files: on a full disk a write kills the process (SIGBUS)
# instead of raising, and opening a shard grows its files by some MiB (measured: about 15 for a
# small index). Below this much free space the store refuses to open, with the reason.
MIN_FREE_MB_TO_OPEN = 64


class EdgeStore(CatalogRecords):
    """`VectorStore` on qdrant-edge, Qdrant's in-process engine."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        _check_free_space(self._path)
        self._lock = _lock(self._path)
        try:
            self._pages: qe.EdgeShard | None = _load_if_present(self._pages_dir)
            self._figures: qe.EdgeShard | None = _load_if_present(self._figures_dir)
            self._catalog: qe.EdgeShard | None = _load_if_present(self._catalog_dir)
        except BaseException:
            os.close(self._lock)
            raise
        self._schema: tuple[list[VectorSpec], list[VectorSpec]] | None = None
        self._closed = False

    @property
    def _pages_dir(self) -> Path:
        return self._path / "pages"

    @property
    def _figures_dir(self) -> Path:
        return self._path / "figures"

    @property
    def _catalog_dir(self) -> Path:
        return self._path / "catalog"

    # --- schema ----------------------------------------------------------------------------

    def ensure_schema(self, vectors: list[VectorSpec], figure_vectors: list[VectorSpec] = ()) -> None:
        self._check_open()
        schema = (list(vectors), list(figure_vectors))
        if self._schema == schema:
            return
        self._pages = self._with_config("_pages", self._pages_dir, _edge_config(vectors))
        if figure_vectors:
            self._figures = self._with_config("_figures", self._figures_dir, _edge_config(figure_vectors))
        self._catalog_or_create()
        self._schema = schema

    def _with_config(self, attribute: str, directory: Path, config: qe.EdgeConfig) -> qe.EdgeShard:
        """The shard held in `attribute`, created with `config`, or reopened with it (the engine checks
        it against the stored segments; on a mismatch the shard stays open as it was)."""
        shard: qe.EdgeShard | None = getattr(self, attribute)
        if shard is None:
            return _create_shard(directory, config)
        stored, wanted = _stored_vector_names(directory), set(config.vectors) | set(config.sparse_vectors)
        if stored != wanted:
            raise _schema_mismatch(directory, f"stored vectors {sorted(stored)}, wanted {sorted(wanted)}")
        shard.close()
        try:
            return qe.EdgeShard.load(str(directory), config)
        except Exception as exc:  # qdrant-edge raises plain Exception
            setattr(self, attribute, qe.EdgeShard.load(str(directory)))
            raise _schema_mismatch(directory, str(exc)) from exc

    # --- pages -----------------------------------------------------------------------------

    def upsert_pages(self, points: list[PagePoint]) -> None:
        if not points:
            return
        pages = self._require_pages()
        if figures := figure_points(points):
            if self._figures is None:
                raise StoreError(f"No figures index at {self._figures_dir}: call ensure_schema() with figure vectors.")
            _upsert(self._figures, [_edge_point(figure) for figure in figures], "figures")
        _upsert(pages, [_edge_point(point) for point in points], "pages")

    def delete_book_pages(self, book_id: str) -> None:
        shard = self._require_pages()
        for each in (self._figures, shard):
            if each is not None:
                each.update(qe.UpdateOperation.delete_points_by_filter(_book_filter(book_id)))
                each.flush()

    def count_pages(self, book_id: str | None = None) -> int:
        shard = self._open_pages()
        if shard is None:
            return 0
        page_filter = _book_filter(book_id) if book_id is not None else None
        return shard.count(qe.CountRequest(exact=True, filter=page_filter))

    def page_numbers(self, book_id: str) -> set[int]:
        shard = self._open_pages()
        if shard is None:
            return set()
        records = _scroll_all(shard, _book_filter(book_id), with_payload=["page"])
        return {int(record.payload["page"]) for record in records}

    def search(self, query: ChannelQuery, page_filter: PageFilter) -> list[ScoredId]:
        shard = self._open_pages()
        if shard is None:
            return []
        hits = shard.query(_query_request(query, page_filter, with_payload=False))
        return [ScoredId(point_id=str(hit.id), score=float(hit.score)) for hit in hits]

    def search_figures(self, query: ChannelQuery, page_filter: PageFilter) -> list[ScoredFigure]:
        self._check_open()
        if self._figures is None:
            return []
        hits = self._figures.query(_query_request(query, page_filter, with_payload=FIGURE_HIT_FIELDS))
        return [scored_figure(hit.payload, hit.score) for hit in hits]

    def get_pages(self, point_ids: list[str]) -> dict[str, PageRecord]:
        shard = self._open_pages()
        if shard is None or not point_ids:
            return {}
        records = shard.retrieve(point_ids, with_payload=True, with_vector=False)
        return {str(record.id): PageRecord.model_validate(record.payload) for record in records}

    # --- catalog ---------------------------------------------------------------------------

    def list_books(self) -> list[BookRecord]:
        shard = self._open_catalog()
        if shard is None:
            return []
        kind_filter = qe.Filter(must=[qe.FieldCondition(key="kind", match=qe.MatchValue("book"))])
        books = [BookRecord.model_validate(r.payload["data"]) for r in _scroll_all(shard, kind_filter, True)]
        return sorted(books, key=lambda book: book.book_id)

    def delete_book(self, book_id: str) -> None:
        shard = self._open_catalog()
        if shard is None:
            return
        shard.update(qe.UpdateOperation.delete_points([catalog_id(f"book:{book_id}")]))
        shard.flush()

    def _put_catalog(self, key: str, kind: str, data: dict[str, Any]) -> None:
        shard = self._catalog_or_create()
        point = qe.Point(id=catalog_id(key), vector={}, payload={"kind": kind, "data": data})
        shard.update(qe.UpdateOperation.upsert_points([point]))
        shard.flush()

    def _get_catalog(self, key: str) -> dict[str, Any] | None:
        shard = self._open_catalog()
        if shard is None:
            return None
        records = shard.retrieve([catalog_id(key)], with_payload=True, with_vector=False)
        return records[0].payload["data"] if records else None

    # --- lifecycle -------------------------------------------------------------------------

    def drop(self) -> None:
        self._check_open()
        self._close_shards()
        for directory in (self._pages_dir, self._figures_dir, self._catalog_dir):
            shutil.rmtree(directory, ignore_errors=True)

    def close(self) -> None:
        self._close_shards()
        if not self._closed:
            os.close(self._lock)  # releases the lock
        self._closed = True

    def _close_shards(self) -> None:
        for shard in (self._pages, self._figures, self._catalog):
            if shard is not None:
                shard.close()
        self._pages = self._figures = self._catalog = None
        self._schema = None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"The store at {self._path} is closed; open a new one.")

    def _open_pages(self) -> qe.EdgeShard | None:
        self._check_open()
        return self._pages

    def _open_catalog(self) -> qe.EdgeShard | None:
        self._check_open()
        return self._catalog

    def _catalog_or_create(self) -> qe.EdgeShard:
        shard = self._open_catalog()
        if shard is None:
            shard = self._catalog = qe.EdgeShard.create(str(self._catalog_dir), _CATALOG_PLACEHOLDER)
        return shard

    def _require_pages(self) -> qe.EdgeShard:
        shard = self._open_pages()
        if shard is None:
            raise StoreError(f"No pages index at {self._pages_dir}: call ensure_schema() before writing pages.")
        return shard


# --- configuration ---------------------------------------------------------------------------


def _lock(path: Path) -> int:
    """An exclusive lock on the index directory (its file descriptor), or a StoreError saying why not."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise StoreError(f"Cannot open the index at {path}: {error.strerror or error}.") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(
            f"The index at {path} is open in another process (a running `pathorag serve` or indexing run?); "
            "the embedded engine serves one process at a time. Stop that process, or share one Qdrant server "
            "(PATHORAG_QDRANT_URL) between them."
        ) from None
    return fd


def _check_free_space(path: Path) -> None:
    free_mb = free_mib(path)
    if free_mb < MIN_FREE_MB_TO_OPEN:
        raise StoreError(
            f"The disk of the index at {path} has {free_mb:.0f} MiB free; the embedded engine needs at least "
            f"{MIN_FREE_MB_TO_OPEN} MiB to open it safely (its writes would fail by killing the process). "
            "Free some space and try again."
        )


def _load_if_present(directory: Path) -> qe.EdgeShard | None:
    if not directory.is_dir() or not any(directory.iterdir()):
        return None
    return qe.EdgeShard.load(str(directory))


def _stored_vector_names(directory: Path) -> set[str]:
    """Names in the shard's persisted config: the engine inherits a vector group a config leaves empty,
    so a removed channel would otherwise go unnoticed."""
    config_file = directory / "edge_config.json"
    try:
        stored = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"Cannot read the index configuration {config_file}: {exc}") from exc
    return set(stored.get("vectors") or {}) | set(stored.get("sparse_vectors") or {})


def _schema_mismatch(directory: Path, reason: str) -> StoreError:
    return StoreError(
        f"The index at {directory} was built with different vectors ({reason}). "
        "Use the encoders it was built with, or drop and rebuild the index."
    )


def _create_shard(directory: Path, config: qe.EdgeConfig) -> qe.EdgeShard:
    """A pages or figures shard (both filter on the same page fields)."""
    shard = qe.EdgeShard.create(str(directory), config)
    for field in _INDEXED_FIELDS:
        shard.update(qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword))
    shard.flush()
    return shard


def _edge_config(vectors: list[VectorSpec]) -> qe.EdgeConfig:
    dense = {spec.name: _dense_params(spec) for spec in vectors if spec.kind != "sparse"}
    sparse = {spec.name: _sparse_params(spec) for spec in vectors if spec.kind == "sparse"}
    if not dense and not sparse:
        raise StoreError("The pages index needs at least one vector channel; none was configured.")
    return qe.EdgeConfig(vectors=dense, sparse_vectors=sparse)


_DATATYPES = {
    "float32": None,
    "float16": qe.VectorStorageDatatype.Float16,
    "turbo8": qe.VectorStorageDatatype.Turbo8,
}


def _datatype(spec: VectorSpec) -> qe.VectorStorageDatatype | None:
    return _DATATYPES[spec.datatype]


def _dense_params(spec: VectorSpec) -> qe.EdgeVectorParams:
    multivector = qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim) if spec.kind == "multi" else None
    return qe.EdgeVectorParams(
        size=spec.dim,
        distance=qe.Distance.Dot if spec.distance == "dot" else qe.Distance.Cosine,
        multivector_config=multivector,
        datatype=_datatype(spec),
        hnsw_config=None if spec.index else _NO_HNSW,
    )


def _sparse_params(spec: VectorSpec) -> qe.EdgeSparseVectorParams:
    return qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf, datatype=_datatype(spec))


# --- points, queries, filters ----------------------------------------------------------------


def _upsert(shard: qe.EdgeShard, points: list[qe.Point], what: str) -> None:
    try:
        shard.update(qe.UpdateOperation.upsert_points(points))
    except Exception as exc:  # qdrant-edge raises plain Exception
        raise StoreError(f"qdrant-edge rejected the {what}: {exc}") from exc
    shard.flush()


def _edge_point(point: PagePoint | FigurePoint) -> qe.Point:
    vector = dense_vectors(point) | {name: _edge_sparse(sparse) for name, sparse in non_empty_sparse(point).items()}
    return qe.Point(id=point.point_id, vector=vector, payload=point.record.model_dump(mode="json"))


def _edge_sparse(sparse: SparseVector) -> qe.SparseVector:
    return qe.SparseVector(indices=list(sparse.indices), values=list(sparse.values))


def _nearest(query: ChannelQuery) -> qe.Query:
    if isinstance(query.vector, SparseVector):
        return qe.Query.Nearest(_edge_sparse(query.vector), using=query.using)
    return qe.Query.Nearest(query_list(query), using=query.using)


def _query_request(query: ChannelQuery, page_filter: PageFilter, with_payload: bool | list[str]) -> qe.QueryRequest:
    edge_filter = _edge_filter(page_filter)
    return qe.QueryRequest(
        limit=query.limit,
        query=_nearest(query),
        prefetches=[_prefetch(query.prefetch, edge_filter)] if query.prefetch else None,
        filter=edge_filter,
        with_payload=with_payload,
    )


def _prefetch(query: ChannelQuery, edge_filter: qe.Filter | None) -> qe.Prefetch:
    return qe.Prefetch(
        limit=query.limit,
        query=_nearest(query),
        prefetches=[_prefetch(query.prefetch, edge_filter)] if query.prefetch else None,
        filter=edge_filter,
    )


def _book_filter(book_id: str) -> qe.Filter:
    return qe.Filter(must=[qe.FieldCondition(key="book_id", match=qe.MatchValue(book_id))])


def _edge_filter(page_filter: PageFilter) -> qe.Filter | None:
    must, must_not = filter_terms(page_filter)
    if not must and not must_not:
        return None
    conditions = [[qe.FieldCondition(key=key, match=qe.MatchAny(any=values)) for key, values in terms]
                  for terms in (must, must_not)]
    return qe.Filter(must=conditions[0], must_not=conditions[1] or None)


def _scroll_all(shard: qe.EdgeShard, edge_filter: qe.Filter | None, with_payload: bool | list[str]) -> list[qe.Record]:
    records: list[qe.Record] = []
    offset = None
    while True:
        request = qe.ScrollRequest(
            offset=offset, limit=_SCROLL_PAGE, filter=edge_filter, with_payload=with_payload, with_vector=False
        )
        batch, offset = shard.scroll(request)
        records.extend(batch)
        if offset is None:
            return records
