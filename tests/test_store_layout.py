"""The server backend creates its collections with the layout the settings ask for (shards, replicas,
on-disk page vectors, HNSW on the FDE only), checked through qdrant-client's local mode: it validates
every request, keeps the per-vector settings and is shown the collection-level ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient

from rag.encoders import BM25, TEXT, page_vector_specs
from rag.encoders.layout import PAGE, PAGE_CENTROIDS, PAGE_FDE, visual_vectors
from rag.encoders.multivector import FixedDimensionalEncoder
from rag.models import PagePoint, PageRecord
from rag.page_index import page_point_id
from rag.search import visual_query
from rag.settings import RagSettings
from rag.store import PageFilter, VectorSpec
from rag.store.server import CollectionLayout, ServerStore

DIM = 16
SPECS = [*page_vector_specs(DIM), VectorSpec(TEXT, "multi", 8), VectorSpec(BM25, "sparse")]


class RecordingClient(QdrantClient):
    """The real local-mode client, which also remembers how each collection was asked for."""

    created: dict[str, dict]

    def create_collection(self, collection_name, **kwargs):
        self.created = getattr(self, "created", {}) | {collection_name: kwargs}
        return super().create_collection(collection_name, **kwargs)


def test_collections_are_created_with_the_configured_layout(tmp_path: Path) -> None:
    settings = RagSettings(
        _env_file=None, qdrant_shard_number=6, qdrant_replication_factor=2, qdrant_write_consistency_factor=2,
        qdrant_fde_hnsw=True, qdrant_page_vectors_on_disk=True,
    )
    client = RecordingClient(path=str(tmp_path / "qdrant"))
    store = ServerStore(client, "lib", CollectionLayout.from_settings(settings))
    store.ensure_schema(SPECS)

    asked = client.created["lib_pages"]
    assert (asked["shard_number"], asked["replication_factor"], asked["write_consistency_factor"]) == (6, 2, 2)
    assert asked["on_disk_payload"] is True
    catalog = client.created["lib_catalog"]
    assert (catalog["shard_number"], catalog["replication_factor"]) == (1, 2)
    vectors = client.get_collection("lib_pages").config.params.vectors
    assert vectors[PAGE].on_disk is True and not vectors[PAGE_CENTROIDS].on_disk and not vectors[PAGE_FDE].on_disk
    assert vectors[PAGE_FDE].hnsw_config.m == 16  # a graph on the first stage only
    assert vectors[PAGE].hnsw_config.m == 0 and vectors[PAGE_CENTROIDS].hnsw_config.m == 0

    # The shipped visual chain runs on that layout.
    fde = FixedDimensionalEncoder(DIM)
    rng = np.random.default_rng(0)
    pages = [rng.standard_normal((40, DIM)).astype(np.float32) for _ in range(12)]
    points = []
    for number, tokens in enumerate(pages, start=1):
        tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)
        dense, multi = visual_vectors(tokens, fde)
        points.append(PagePoint(page_point_id("b", number), PageRecord(book_id="b", page=number), dense=dense, multi=multi))
    store.upsert_pages(points)
    hits = store.search(visual_query(pages[4][:10], fde, 5), PageFilter(book_ids=["b"]))
    assert hits[0].point_id == page_point_id("b", 5)
    store.close()


def test_defaults_keep_one_shard_the_page_vectors_in_ram_and_scan_the_fde(tmp_path: Path) -> None:
    client = RecordingClient(path=str(tmp_path / "qdrant"))
    store = ServerStore(client, "lib", CollectionLayout.from_settings(RagSettings(_env_file=None)))
    store.ensure_schema(SPECS)
    asked = client.created["lib_pages"]
    assert (asked["shard_number"], asked["replication_factor"]) == (1, 1)
    vectors = client.get_collection("lib_pages").config.params.vectors
    assert vectors[PAGE_FDE].hnsw_config.m == 0 and not vectors[PAGE].on_disk
    assert vectors[TEXT].hnsw_config is None  # the text chunks keep the engine's default graph
    store.close()
