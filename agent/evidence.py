"""Support for each multiple-choice option from retrieval alone (evidence-only mode).

A first, deliberately simple rule: an option's support is the fused score of the best page that its
queries (question + option text) retrieved (negative scores count as 0), normalised so the options'
supports sum to 1; no support at all gives every option the same share.
"""

from __future__ import annotations

from collections.abc import Sequence


def score_options(question: str, options: Sequence[str], hits_per_option: Sequence[Sequence[float]]) -> list[float]:
    """Support per option in 0..1 (summing to 1); `hits_per_option[i]` are the fused page scores for option i."""
    if len(options) != len(hits_per_option):
        raise ValueError("one list of hit scores per option is needed")
    if not options:
        return []
    best = [max(0.0, max(scores, default=0.0)) for scores in hits_per_option]
    total = sum(best)
    if total <= 0:
        return [1.0 / len(options)] * len(options)
    return [value / total for value in best]
