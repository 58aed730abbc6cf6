"""The encoders of every channel, loaded together from Settings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rag.encoders.multivector import FixedDimensionalEncoder, page_centroids
from rag.encoders.page import PageEncoder, load_page_encoder
from rag.encoders.sparse import Bm25Encoder
from rag.encoders.text import TextEncoder, load_text_encoder
from rag.models import EncoderInfo
from rag.settings import Settings
from rag.store.base import VectorSpec

# Named vectors of the pages collection (DESIGN.md, "Qdrant data model").
PAGE = "page"  # page-image multivector, exact MaxSim rerank only (no HNSW)
PAGE_FDE = "page_fde"  # MUVERA FDE of the page multivector (dot product): first, widest candidate stage
PAGE_CENTROIDS = "page_centroids"  # 32 k-means centroids of the page multivector (MaxSim): second stage
TEXT = "text"  # text-chunk multivector (page score = best chunk)
BM25 = "bm25"  # sparse lexical vector, IDF applied by the engine


def page_vector_specs(dim: int) -> list[VectorSpec]:
    """The visual channel's named vectors for a page encoder of `dim`-d tokens."""
    return [
        VectorSpec(PAGE, "multi", dim, index=False, float16=True),
        VectorSpec(PAGE_FDE, "dense", FixedDimensionalEncoder(dim).dim, float16=True, distance="dot"),
        VectorSpec(PAGE_CENTROIDS, "multi", dim, index=False, float16=True),
    ]


def visual_vectors(
    tokens: np.ndarray, fde: FixedDimensionalEncoder
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(dense, multi) named vectors a page stores for the visual channel, from its (n, dim) multivector.

    `fde` is the page encoder's (`PageEncoder.fde`): queries are encoded with the same one.
    """
    return {PAGE_FDE: fde.page(tokens)}, {PAGE: tokens, PAGE_CENTROIDS: page_centroids(tokens)}


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
            specs += page_vector_specs(self.page.info.dim)
        return specs


def load_encoders(settings: Settings) -> Encoders:
    return Encoders(
        text=load_text_encoder(settings),
        sparse=Bm25Encoder(),
        page=load_page_encoder(settings),
    )
