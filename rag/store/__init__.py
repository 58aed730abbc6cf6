"""Qdrant backends behind one interface: embedded qdrant-edge by default, a server when configured."""

from __future__ import annotations

from rag.settings import RagSettings
from rag.store.base import ChannelQuery, PageFilter, ScoredFigure, ScoredId, StoreError, VectorSpec, VectorStore

__all__ = [
    "ChannelQuery", "PageFilter", "ScoredFigure", "ScoredId", "StoreError", "VectorSpec", "VectorStore", "open_store",
]  # fmt: skip


def open_store(settings: RagSettings) -> VectorStore:
    """The Qdrant server at `settings.qdrant_url` if set, else the embedded index in `settings.index_dir`."""
    # Imported here so that each deployment loads only the engine it uses.
    if settings.qdrant_url:
        from qdrant_client import QdrantClient

        from rag.store.server import CollectionLayout, ServerStore

        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        client = QdrantClient(url=settings.qdrant_url, api_key=api_key)
        return ServerStore(client, settings.collection_prefix, CollectionLayout.from_settings(settings))

    from rag.store.edge import EdgeStore

    return EdgeStore(settings.index_dir)
