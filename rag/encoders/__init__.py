"""The encoders of every channel, loaded together from RagSettings."""

from __future__ import annotations

from dataclasses import dataclass

from rag.encoders.layout import (
    BM25,
    PAGE,
    PAGE_CENTROIDS,
    PAGE_FDE,
    TEXT,
    page_vector_specs,
    visual_vectors,
)
from rag.encoders.page import PageEncoder, load_page_encoder
from rag.encoders.sparse import Bm25Encoder
from rag.encoders.text import TextEncoder, load_text_encoder
from rag.models import EncoderInfo
from rag.settings import RagSettings
from rag.store.base import VectorSpec

__all__ = [
    "BM25",
    "PAGE",
    "PAGE_CENTROIDS",
    "PAGE_FDE",
    "TEXT",
    "Encoders",
    "load_encoders",
    "page_vector_specs",
    "visual_vectors",
]


@dataclass
class Encoders:
    text: TextEncoder
    sparse: Bm25Encoder
    page: PageEncoder | None  # None: no visual channel

    def infos(self) -> dict[str, EncoderInfo]:
        infos = {TEXT: self.text.info, BM25: self.sparse.info}
        if self.page is not None:
            infos[PAGE] = self.page.info
        return infos

    def vector_specs(self) -> list[VectorSpec]:
        specs = [
            VectorSpec(TEXT, "multi", self.text.info.dim),
            VectorSpec(BM25, "sparse"),
        ]
        return specs + self.figure_vector_specs()

    def figure_vector_specs(self) -> list[VectorSpec]:
        """The figures collection's vectors: figure crops are encoded as pages are (none without a page encoder)."""
        return page_vector_specs(self.page.info.dim) if self.page is not None else []


def load_encoders(settings: RagSettings) -> Encoders:
    return Encoders(
        text=load_text_encoder(settings),
        sparse=Bm25Encoder(),
        page=load_page_encoder(settings),
    )
