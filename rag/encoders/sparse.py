"""BM25 sparse vectors from qdrant-edge's own tokenizer and hashing.

The engine applies IDF (the sparse vector is created with `Modifier.Idf`), so a document vector
holds only BM25's saturated term-frequency part and a query vector holds 1 per distinct term.
"""

from __future__ import annotations

from collections import defaultdict
from importlib import metadata

import qdrant_edge

from rag.models import EncoderInfo, SparseVector

# Textbook pages run to a few hundred words; BM25 length normalisation is relative to this.
TYPICAL_PAGE_TOKENS = 300.0
_K = 1.2
_B = 0.75


class Bm25Encoder:
    """English BM25: word tokenizer, lowercase, ASCII folding, English stopwords, Snowball stemmer."""

    def __init__(self, avg_len: float = TYPICAL_PAGE_TOKENS) -> None:
        config = qdrant_edge.Bm25Config(
            k=_K,
            b=_B,
            avg_len=avg_len,
            language="english",
            lowercase=True,
            ascii_folding=True,
            stopwords=qdrant_edge.Language.English,
            stemmer=qdrant_edge.SnowballParams(qdrant_edge.SnowballLanguage.English),
        )
        self._model = qdrant_edge.Bm25(config)
        # Term ids are hashes computed by qdrant-edge: its version is part of the revision.
        revision = (
            f"k={_K},b={_B},avg_len={avg_len:g},english,stem,stop,lower,ascii;"
            f"qdrant-edge-py={metadata.version('qdrant-edge-py')}"
        )
        self.info = EncoderInfo(name="bm25", revision=revision, dim=0, pooling="sparse, idf by engine")

    def embed_document(self, text: str) -> SparseVector:
        return _to_sparse(self._model.embed_document(text))

    def embed_query(self, text: str) -> SparseVector:
        return _to_sparse(self._model.embed_query(text))


def merge_weighted(parts: list[tuple[SparseVector, float]]) -> SparseVector:
    """Sum weighted sparse vectors index-wise, e.g. body + 2 x headings + 1.5 x captions."""
    totals: defaultdict[int, float] = defaultdict(float)
    for vector, weight in parts:
        for index, value in zip(vector.indices, vector.values):
            totals[index] += weight * value
    indices = sorted(totals)
    return SparseVector(indices=indices, values=[totals[i] for i in indices])


def _to_sparse(vector: qdrant_edge.SparseVector) -> SparseVector:
    return SparseVector(indices=list(vector.indices), values=[float(v) for v in vector.values])
