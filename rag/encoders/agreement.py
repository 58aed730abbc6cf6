"""Do two page encoders give the same vectors? (A served and an in-process model of the same weights.)

They may not even when the weights are the same: vLLM formats inputs with the backbone's processor
and runs its own attention kernels, colpali-engine and transformers their own. An index is built by
one encoder; the other may search or extend it only if these figures show the vectors agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from rag.encoders.page import PageEncoder


@dataclass(frozen=True)
class Agreement:
    rows_match: bool  # the same number of vectors for every page and query
    max_abs_diff: float  # largest difference of one vector component (inf when rows differ)
    max_score_diff: float  # largest difference of a query-page MaxSim score
    top_k_overlap: float  # mean share of each query's top-k pages that both rank there
    k: int

    def agrees(self, max_abs_diff: float = 1e-3, min_overlap: float = 1.0) -> bool:
        return self.rows_match and self.max_abs_diff <= max_abs_diff and self.top_k_overlap >= min_overlap

    def describe(self) -> str:
        return (
            f"rows {'match' if self.rows_match else 'differ'}, max |diff| {self.max_abs_diff:.2e}, "
            f"max MaxSim diff {self.max_score_diff:.2e}, top-{self.k} overlap {self.top_k_overlap:.2f}"
        )


def maxsim_scores(queries: list[np.ndarray], pages: list[np.ndarray]) -> np.ndarray:
    """(queries, pages) late-interaction scores: per query token, its best page token, summed."""
    return np.array([[float((q @ p.T).max(axis=1).sum()) for p in pages] for q in queries])


def compare_encoders(
    a: PageEncoder, b: PageEncoder, pages: list[Image.Image], queries: list[str], k: int = 10
) -> Agreement:
    """Agreement of `a` and `b` on these page images and text queries."""
    pages_a, pages_b = a.embed_images(pages), b.embed_images(pages)
    queries_a, queries_b = a.embed_queries(queries), b.embed_queries(queries)
    pairs = list(zip(pages_a + queries_a, pages_b + queries_b))
    rows_match = all(x.shape == y.shape for x, y in pairs)
    max_abs = max(float(np.abs(x - y).max()) for x, y in pairs) if rows_match else float("inf")
    scores_a, scores_b = maxsim_scores(queries_a, pages_a), maxsim_scores(queries_b, pages_b)
    k = min(k, len(pages))
    top_a, top_b = np.argsort(-scores_a, axis=1)[:, :k], np.argsort(-scores_b, axis=1)[:, :k]
    overlap = float(np.mean([len(set(x) & set(y)) / k for x, y in zip(top_a, top_b)]))
    return Agreement(rows_match, max_abs, float(np.abs(scores_a - scores_b).max()), overlap, k)
