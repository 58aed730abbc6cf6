"""The page index: the vector store, the encoders that fill it and the page images, kept consistent.

The index records which encoders built it, and how (the page encoder's `pooling` names the layout
of the visual candidate vectors: FDE parameters and centroids). Searching or adding with different
encoders or another layout would compare vectors from different spaces, or miss vectors, so it is
refused with a pointer to `pathorag index reindex`.
"""

from __future__ import annotations

import uuid
from functools import cached_property

from rag.encoders import Encoders, load_encoders
from rag.models import BookRecord, EncoderInfo
from rag.page_images import PageImageStore
from rag.settings import Settings
from rag.store import VectorStore, open_store

# Page point ids are derived from (book, page) so re-indexing a page overwrites it, never duplicates it.
_POINT_NAMESPACE = uuid.UUID("6f1d8a52-3c1e-4f55-9a43-2b8f0c7e9d11")
META_VERSION = 1


class EncoderMismatchError(RuntimeError):
    """The index was built with other encoders than the configured ones."""


def page_point_id(book_id: str, page: int) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{book_id}:{page}"))


class PageIndex:
    """Opens the store lazily and loads encoders on first use (loading models takes seconds)."""

    def __init__(
        self, settings: Settings, store: VectorStore | None = None, encoders: Encoders | None = None
    ) -> None:
        self.settings = settings
        self._store = store
        self._encoders = encoders
        self.images = PageImageStore(settings.page_images_dir)

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    @cached_property
    def encoders(self) -> Encoders:
        encoders = self._encoders or load_encoders(self.settings)
        self._check_encoders(encoders)
        return encoders

    def _check_encoders(self, encoders: Encoders) -> None:
        meta = self.store.get_meta()
        wanted = {name: info.model_dump() for name, info in encoders.infos().items()}
        if meta is None:
            self.store.ensure_schema(encoders.vector_specs())
            self.store.put_meta({"version": META_VERSION, "encoders": wanted})
            return
        # Normalised through EncoderInfo: an index recorded before a field existed has its default.
        built = {name: EncoderInfo.model_validate(info).model_dump() for name, info in meta.get("encoders", {}).items()}
        if built != wanted:
            raise EncoderMismatchError(
                "The index was built with other encoders or vector layouts than the configured ones:\n"
                + describe_encoder_change(built, wanted)
                + "\nRun `pathorag index reindex` to rebuild it with the configured encoders, "
                "or restore the settings it was built with."
            )
        self.store.ensure_schema(encoders.vector_specs())

    def complete_books(self) -> list[BookRecord]:
        return [book for book in self.store.list_books() if book.complete]

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def describe_encoder_change(built: dict, wanted: dict) -> str:
    lines = []
    for channel in sorted(set(built) | set(wanted)):
        old, new = built.get(channel), wanted.get(channel)
        if old != new:
            lines.append(f"  {channel}: index has {_short(old)}, settings give {_short(new)}")
    return "\n".join(lines)


def _short(info: dict | None) -> str:
    if info is None:
        return "no such channel"
    how = ", ".join(filter(None, [info.get("runtime"), info.get("input_format")]))
    return (
        f"{info['name']} ({how}; revision {info.get('revision') or '-'}, dim {info['dim']}, "
        f"{info.get('pooling') or '-'})"
    )
