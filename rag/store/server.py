"""Server backend: collections `{prefix}_pages`, `{prefix}_figures` and `{prefix}_catalog` through qdrant-client.

pathorag creates the collections itself with a `CollectionLayout` from the settings (shards, replicas,
what stays in RAM, which vectors get an HNSW graph) rather than leaving them to the cluster's defaults
(README, "Scaling out"). Also runs against qdrant-client's local mode (`QdrantClient(path=...)`),
which speaks the same API and keeps the per-vector settings (not shards and replicas).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

from rag.encoders.layout import PAGE, PAGE_FDE
from rag.models import BookRecord, FigurePoint, PagePoint, PageRecord, SparseVector
from rag.settings import RagSettings
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

_INDEXED_FIELDS = ("organ_systems", "page_kind")  # and book_id, the tenant field
_FDE_HNSW = qm.HnswConfigDiff(m=16, ef_construct=128)
_SCROLL_PAGE = 1000
# Comparable description of a stored vector: what must match for existing data to stay valid.
_Signature = tuple[Any, ...]


@dataclass(frozen=True)
class CollectionLayout:
    """How the pages and figures collections are laid out on a server or cluster (set once, when each
    is created)."""

    shard_number: int = 1
    replication_factor: int = 1
    write_consistency_factor: int = 1
    page_vectors_on_disk: bool = False  # `page` memory-mapped: less RAM, slower rerank of the 50 candidates
    fde_hnsw: bool = False  # an HNSW graph on `page_fde` instead of a full scan of it

    @classmethod
    def from_settings(cls, settings: RagSettings) -> CollectionLayout:
        return cls(
            shard_number=settings.qdrant_shard_number,
            replication_factor=settings.qdrant_replication_factor,
            write_consistency_factor=settings.qdrant_write_consistency_factor,
            page_vectors_on_disk=settings.qdrant_page_vectors_on_disk,
            fde_hnsw=settings.qdrant_fde_hnsw,
        )


class ServerStore(CatalogRecords):
    """`VectorStore` on a Qdrant server or cluster (or qdrant-client's local mode)."""

    def __init__(self, client: QdrantClient, prefix: str, layout: CollectionLayout | None = None) -> None:
        self._client = client
        self._pages = f"{prefix}_pages"
        self._figures = f"{prefix}_figures"
        self._catalog = f"{prefix}_catalog"
        self._layout = layout or CollectionLayout()

    # --- schema ----------------------------------------------------------------------------

    def ensure_schema(self, vectors: list[VectorSpec], figure_vectors: list[VectorSpec] = ()) -> None:
        if not vectors:
            raise StoreError("The pages collection needs at least one vector channel; none was configured.")
        for collection, specs in ((self._pages, vectors), (self._figures, figure_vectors)):
            if not specs:
                continue
            if self._client.collection_exists(collection):
                self._check_schema(collection, specs)
            else:
                self._create(collection, specs)
        self._ensure_catalog()

    def _create(self, collection: str, vectors: list[VectorSpec]) -> None:
        """A pages or figures collection (both filter on the same page fields)."""
        layout = self._layout
        self._client.create_collection(
            collection,
            vectors_config={spec.name: _dense_params(spec, layout) for spec in vectors if spec.kind != "sparse"},
            sparse_vectors_config={spec.name: _sparse_params(spec) for spec in vectors if spec.kind == "sparse"},
            shard_number=layout.shard_number,
            replication_factor=layout.replication_factor,
            write_consistency_factor=layout.write_consistency_factor,
            on_disk_payload=True,  # page text is read for the hits only; the payload indexes stay in RAM
        )
        with warnings.catch_warnings():
            # Local mode has no payload indexes and says so; a server builds them.
            warnings.filterwarnings("ignore", message="Payload indexes have no effect in the local Qdrant")
            # Every page belongs to one book, and searches and removals filter by book: the tenant field
            # keeps each book's pages together in storage.
            book = qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=True)
            self._client.create_payload_index(collection, "book_id", book)
            for field in _INDEXED_FIELDS:
                self._client.create_payload_index(collection, field, qm.PayloadSchemaType.KEYWORD)

    def _check_schema(self, collection: str, vectors: list[VectorSpec]) -> None:
        params = self._client.get_collection(collection).config.params
        existing = _stored_signatures(params)
        expected = {spec.name: _spec_signature(spec) for spec in vectors}
        differing = sorted(name for name in existing.keys() | expected.keys() if existing.get(name) != expected.get(name))
        if differing:
            details = "; ".join(f"{name}: stored {existing.get(name)}, wanted {expected.get(name)}" for name in differing)
            raise StoreError(
                f"Collection {collection!r} was built with different vectors ({details}). "
                "Use the encoders it was built with, or drop and rebuild the index."
            )

    def _ensure_catalog(self) -> None:
        if not self._client.collection_exists(self._catalog):
            # One small shard, as many copies as the pages: the catalog says which books are searchable.
            self._client.create_collection(
                self._catalog, vectors_config={}, shard_number=1, replication_factor=self._layout.replication_factor,
                write_consistency_factor=self._layout.write_consistency_factor,
            )

    # --- pages -----------------------------------------------------------------------------

    def upsert_pages(self, points: list[PagePoint]) -> None:
        if not points:
            return
        self._require_pages()
        if figures := figure_points(points):
            if not self._client.collection_exists(self._figures):
                raise StoreError(f"Collection {self._figures!r} does not exist: call ensure_schema() with figure vectors.")
            self._upsert(self._figures, [_point_struct(figure) for figure in figures], "figures")
        self._upsert(self._pages, [_point_struct(point) for point in points], "pages")

    def _upsert(self, collection: str, structs: list[qm.PointStruct], what: str) -> None:
        try:
            self._client.upsert(collection, structs, wait=True)
        except (UnexpectedResponse, ValueError) as exc:
            raise StoreError(f"Qdrant rejected the {what}: {exc}") from exc

    def delete_book_pages(self, book_id: str) -> None:
        self._require_pages()
        for collection in (self._figures, self._pages):
            if self._client.collection_exists(collection):
                self._client.delete(collection, qm.FilterSelector(filter=_book_filter(book_id)), wait=True)

    def count_pages(self, book_id: str | None = None) -> int:
        if not self._client.collection_exists(self._pages):
            return 0
        count_filter = _book_filter(book_id) if book_id is not None else None
        return self._client.count(self._pages, count_filter=count_filter, exact=True).count

    def page_numbers(self, book_id: str) -> set[int]:
        if not self._client.collection_exists(self._pages):
            return set()
        records = self._scroll_all(self._pages, _book_filter(book_id), with_payload=["page"])
        return {int(record.payload["page"]) for record in records}

    def search(self, query: ChannelQuery, page_filter: PageFilter) -> list[ScoredId]:
        hits = self._query(self._pages, query, page_filter, with_payload=False)
        return [ScoredId(point_id=str(hit.id), score=float(hit.score)) for hit in hits]

    def search_figures(self, query: ChannelQuery, page_filter: PageFilter) -> list[ScoredFigure]:
        hits = self._query(self._figures, query, page_filter, with_payload=FIGURE_HIT_FIELDS)
        return [scored_figure(hit.payload, hit.score) for hit in hits]

    def _query(
        self, collection: str, query: ChannelQuery, page_filter: PageFilter, with_payload: bool | list[str]
    ) -> list[qm.ScoredPoint]:
        if not self._client.collection_exists(collection):
            return []
        query_filter = _query_filter(page_filter)
        return self._client.query_points(
            collection,
            query=_query_vector(query),
            using=query.using,
            prefetch=_prefetch(query.prefetch, query_filter) if query.prefetch else None,
            query_filter=query_filter,
            limit=query.limit,
            with_payload=with_payload,
        ).points

    def get_pages(self, point_ids: list[str]) -> dict[str, PageRecord]:
        if not point_ids or not self._client.collection_exists(self._pages):
            return {}
        records = self._client.retrieve(self._pages, point_ids, with_payload=True, with_vectors=False)
        return {str(record.id): PageRecord.model_validate(record.payload) for record in records}

    def _require_pages(self) -> None:
        if not self._client.collection_exists(self._pages):
            raise StoreError(f"Collection {self._pages!r} does not exist: call ensure_schema() before writing pages.")

    # --- catalog ---------------------------------------------------------------------------

    def list_books(self) -> list[BookRecord]:
        if not self._client.collection_exists(self._catalog):
            return []
        kind_filter = qm.Filter(must=[qm.FieldCondition(key="kind", match=qm.MatchValue(value="book"))])
        records = self._scroll_all(self._catalog, kind_filter, with_payload=True)
        return sorted((BookRecord.model_validate(r.payload["data"]) for r in records), key=lambda b: b.book_id)

    def delete_book(self, book_id: str) -> None:
        if self._client.collection_exists(self._catalog):
            self._client.delete(self._catalog, [catalog_id(f"book:{book_id}")], wait=True)

    def _put_catalog(self, key: str, kind: str, data: dict[str, Any]) -> None:
        self._ensure_catalog()
        point = qm.PointStruct(id=catalog_id(key), vector={}, payload={"kind": kind, "data": data})
        self._client.upsert(self._catalog, [point], wait=True)

    def _get_catalog(self, key: str) -> dict[str, Any] | None:
        if not self._client.collection_exists(self._catalog):
            return None
        records = self._client.retrieve(self._catalog, [catalog_id(key)], with_payload=True, with_vectors=False)
        return records[0].payload["data"] if records else None

    # --- lifecycle -------------------------------------------------------------------------

    def drop(self) -> None:
        for collection in (self._pages, self._figures, self._catalog):
            if self._client.collection_exists(collection):
                self._client.delete_collection(collection)

    def close(self) -> None:
        self._client.close()

    def _scroll_all(
        self, collection: str, scroll_filter: qm.Filter | None, with_payload: bool | list[str]
    ) -> list[qm.Record]:
        records: list[qm.Record] = []
        offset = None
        while True:
            batch, offset = self._client.scroll(
                collection, scroll_filter=scroll_filter, limit=_SCROLL_PAGE, offset=offset, with_payload=with_payload
            )
            records.extend(batch)
            if offset is None:
                return records


# --- configuration ---------------------------------------------------------------------------


_DISTANCES = {"cosine": qm.Distance.COSINE, "dot": qm.Distance.DOT}


_DATATYPES = {"float32": None, "float16": qm.Datatype.FLOAT16, "turbo8": qm.Datatype.TURBO8}


def _datatype(spec: VectorSpec) -> qm.Datatype | None:
    return _DATATYPES[spec.datatype]


def _dense_params(spec: VectorSpec, layout: CollectionLayout) -> qm.VectorParams:
    multivector = qm.MultiVectorConfig(comparator=qm.MultiVectorComparator.MAX_SIM) if spec.kind == "multi" else None
    hnsw = None if spec.index else qm.HnswConfigDiff(m=0)
    if spec.name == PAGE_FDE and layout.fde_hnsw:
        hnsw = _FDE_HNSW
    return qm.VectorParams(
        size=spec.dim,
        distance=_DISTANCES[spec.distance],
        multivector_config=multivector,
        datatype=_datatype(spec),
        hnsw_config=hnsw,
        on_disk=True if spec.name == PAGE and layout.page_vectors_on_disk else None,
    )


def _sparse_params(spec: VectorSpec) -> qm.SparseVectorParams:
    index = qm.SparseIndexParams(datatype=_datatype(spec)) if spec.datatype != "float32" else None
    return qm.SparseVectorParams(modifier=qm.Modifier.IDF, index=index)


def _spec_signature(spec: VectorSpec) -> _Signature:
    if spec.kind == "sparse":
        return ("sparse", spec.datatype)
    return (spec.kind, spec.dim, spec.datatype, spec.distance)


def _stored_signatures(params: qm.CollectionParams) -> dict[str, _Signature]:
    dense = params.vectors if isinstance(params.vectors, dict) else {"": params.vectors} if params.vectors else {}
    signatures = {name: _dense_signature(vector) for name, vector in dense.items()}
    signatures |= {name: _sparse_signature(vector) for name, vector in (params.sparse_vectors or {}).items()}
    return signatures


def _dense_signature(params: qm.VectorParams) -> _Signature:
    distance = next((name for name, value in _DISTANCES.items() if value == params.distance), None)
    if distance is None:
        return (f"{params.distance.value} distance", params.size)
    kind = "multi" if params.multivector_config is not None else "dense"
    return (kind, params.size, params.datatype.value if params.datatype else "float32", distance)


def _sparse_signature(params: qm.SparseVectorParams) -> _Signature:
    if params.modifier != qm.Modifier.IDF:
        return ("sparse without IDF",)
    datatype = params.index.datatype if params.index is not None else None
    return ("sparse", datatype.value if datatype else "float32")


# --- points, queries, filters ----------------------------------------------------------------


def _point_struct(point: PagePoint | FigurePoint) -> qm.PointStruct:
    vector = dense_vectors(point) | {name: _qdrant_sparse(sparse) for name, sparse in non_empty_sparse(point).items()}
    return qm.PointStruct(id=point.point_id, vector=vector, payload=point.record.model_dump(mode="json"))


def _qdrant_sparse(sparse: SparseVector) -> qm.SparseVector:
    return qm.SparseVector(indices=list(sparse.indices), values=list(sparse.values))


def _query_vector(query: ChannelQuery) -> list | qm.SparseVector:
    if isinstance(query.vector, SparseVector):
        return _qdrant_sparse(query.vector)
    return query_list(query)


def _prefetch(query: ChannelQuery, query_filter: qm.Filter | None) -> qm.Prefetch:
    return qm.Prefetch(
        query=_query_vector(query),
        using=query.using,
        limit=query.limit,
        filter=query_filter,
        prefetch=_prefetch(query.prefetch, query_filter) if query.prefetch else None,
    )


def _book_filter(book_id: str) -> qm.Filter:
    return qm.Filter(must=[qm.FieldCondition(key="book_id", match=qm.MatchValue(value=book_id))])


def _query_filter(page_filter: PageFilter) -> qm.Filter | None:
    must, must_not = filter_terms(page_filter)
    if not must and not must_not:
        return None
    conditions: list[list[qm.Condition]] = [
        [qm.FieldCondition(key=key, match=qm.MatchAny(any=values)) for key, values in terms] for terms in (must, must_not)
    ]
    return qm.Filter(must=conditions[0], must_not=conditions[1] or None)
