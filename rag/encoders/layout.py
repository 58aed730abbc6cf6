"""The named vectors of the pages collection and how each is stored (DESIGN.md, "Qdrant data model").

Storage of the visual channel (BENCHMARKS.md, "Retrieval at scale"): the page tokens and their FDE in
Qdrant's 8-bit TurboQuant (`turbo8`: half of float16; its exact top 10 matched float16's on every
benchmark query up to 20 000 pages), the centroids in float16 (their MaxSim scan over a thousand
candidates is faster than on turbo8, and they are only 4 KB a page). About 95 KB a page in all.
"""

from __future__ import annotations

import numpy as np

from rag.encoders.multivector import FixedDimensionalEncoder, describe_prefetch, page_centroids
from rag.store.base import VectorSpec

PAGE = "page"  # page-image multivector, exact MaxSim rerank only (no HNSW)
PAGE_FDE = "page_fde"  # MUVERA FDE of the page multivector (dot product): first, widest candidate stage
PAGE_CENTROIDS = "page_centroids"  # 16 k-means centroids of the page multivector (MaxSim): second stage
TEXT = "text"  # text-chunk multivector (page score = best chunk)
BM25 = "bm25"  # sparse lexical vector, IDF applied by the engine


def page_vector_specs(dim: int) -> list[VectorSpec]:
    """The visual channel's named vectors for a page encoder of `dim`-d tokens."""
    return [
        VectorSpec(PAGE, "multi", dim, index=False, datatype="turbo8"),
        VectorSpec(PAGE_FDE, "dense", FixedDimensionalEncoder(dim).dim, index=False, datatype="turbo8", distance="dot"),
        VectorSpec(PAGE_CENTROIDS, "multi", dim, index=False, datatype="float16"),
    ]


def describe_visual_layout(dim: int) -> str:
    """The candidate vectors and the storage of every visual vector; the index records it with the
    page encoder, so an index built with another layout is refused until it is rebuilt."""
    stored = ", ".join(f"{spec.name} {spec.datatype}" for spec in page_vector_specs(dim))
    return f"{describe_prefetch(dim)}; stored as {stored}"


def visual_vectors(
    tokens: np.ndarray, fde: FixedDimensionalEncoder
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(dense, multi) named vectors a page stores for the visual channel, from its (n, dim) multivector.

    `fde` is the page encoder's (`PageEncoder.fde`): queries are encoded with the same one.
    """
    return {PAGE_FDE: fde.page(tokens)}, {PAGE: tokens, PAGE_CENTROIDS: page_centroids(tokens)}
