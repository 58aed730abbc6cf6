"""Retrieval and calibration metrics. They take ranks (1-based, `None` = not retrieved) and are pure,
so tests check them by hand."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

KS = (1, 5, 10)
NDCG_K = 5



def ranks_of(ranked_pages: Sequence, support: Iterable) -> list[int | None]:
    """1-based rank of each support page in the ranking, None where it is absent."""
    position = {}
    for rank, page in enumerate(ranked_pages, start=1):
        position.setdefault(page, rank)
    return [position.get(page) for page in support]


def found_at(ranks: Sequence[int | None], k: int, all_pages: bool = True) -> bool:
    """All support pages (or, with all_pages=False, any of them) are in the top k."""
    inside = [r is not None and r <= k for r in ranks]
    return all(inside) if all_pages else any(inside)


def reciprocal_rank(ranks: Sequence[int | None]) -> float:
    """1 / rank of the first support page found (0 when none is)."""
    found = [r for r in ranks if r is not None]
    return 1.0 / min(found) if found else 0.0


def ndcg_at_k(ranks: Sequence[int | None], k: int = NDCG_K) -> float:
    """Binary-relevance nDCG@k: every support page is relevant with gain 1."""
    dcg = sum(1.0 / math.log2(r + 1) for r in ranks if r is not None and r <= k)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(ranks), k) + 1))
    return dcg / ideal if ideal else 0.0


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney U / (n_pos n_neg))."""
    if not positives or not negatives:
        return None
    wins = 0.0
    for p in positives:
        for n in negatives:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(positives) * len(negatives))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100), as numpy's default."""
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi:
        return data[lo]
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def retrieval_summary(rows: Sequence[Sequence[int | None]]) -> dict:
    """Recall@k (all support pages, and any support page), MRR and nDCG@5 over items' rank lists."""
    n = len(rows)
    if not n:
        return {"n": 0}
    out: dict = {"n": n}
    for k in KS:
        out[f"recall_all@{k}"] = round(sum(found_at(r, k, True) for r in rows) / n, 4)
    for k in KS:
        out[f"recall_any@{k}"] = round(sum(found_at(r, k, False) for r in rows) / n, 4)
    out["mrr"] = round(sum(reciprocal_rank(r) for r in rows) / n, 4)
    out[f"ndcg@{NDCG_K}"] = round(sum(ndcg_at_k(r, NDCG_K) for r in rows) / n, 4)
    out["multi_page"] = sum(len(r) > 1 for r in rows)
    return out


def latency_summary(values_ms: Sequence[float]) -> dict:
    if not values_ms:
        return {"n": 0}
    return {"n": len(values_ms), "p50_ms": round(percentile(values_ms, 50), 1), "p95_ms": round(percentile(values_ms, 95), 1)}
