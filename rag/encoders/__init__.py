"""The encoders of every channel, loaded together from Settings."""

from __future__ import annotations

from dataclasses import dataclass

from rag.encoders.page import PageEncoder, load_page_encoder
from rag.encoders.sparse import Bm25Encoder
from rag.encoders.text import TextEncoder, load_text_encoder
from rag.models import EncoderInfo
from rag.settings import Settings
from rag.store.base import VectorSpec

# Named vectors of the pages collection (DESIGN.md, "Qdrant data model").
PAGE = "page"  # page-image multivector, exact MaxSim rerank only (no HNSW)
PAGE_POOLED = "page_pooled"  # mean-pooled page vector, HNSW, for candidate prefetch
TEXT = "text"  # text-chunk multivector (page score = best chunk)
BM25 = "bm25"  # sparse lexical vector, IDF applied by the engine


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
        if self.page is not None:
            dim = self.page.info.dim
            specs += [
                VectorSpec(PAGE, "multi", dim, index=False, float16=True),
                VectorSpec(PAGE_POOLED, "dense", dim),
            ]
        return specs


def load_encoders(settings: Settings) -> Encoders:
    return Encoders(
        text=load_text_encoder(settings),
        sparse=Bm25Encoder(),
        page=load_page_encoder(settings),
    )
