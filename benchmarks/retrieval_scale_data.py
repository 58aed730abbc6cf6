"""Synthetic page multivectors shaped like ColQwen's, and the page representations the strategies store.

A page is a grid of about 700 x 128-d unit vectors (ColQwen2 gives 700-768 visual tokens per page),
laid out row by row, 26 tokens a row. Pages are not noise: every token comes from a source vector
plus noise, and sources have structure:

- background sources (margins, blank space, plain text lines) shared by every page, all near one
  global direction; they are 30-60 % of a page's tokens, so a page's mean vector is dominated by them
  (which is why a mean-pooled prefetch ranks pages poorly);
- topic concepts: a page draws 1-3 of `N_TOPICS` topics and 8-16 concepts of those topics, each
  filling a contiguous run of tokens (a paragraph, a figure);
- a few concepts of the page's own (what a query about this page matches best).

A query is derived from a known page: 16 of its content tokens, perturbed, plus 4 generic tokens
near the global direction (the instruction/prefix tokens of a ColQwen query), 20 tokens in all.

Every page is generated from its own seed, so any range of pages can be regenerated alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIM = 128
ROW = 26  # tokens per grid row
N_TOPICS = 300
CONCEPTS_PER_TOPIC = 24
N_BACKGROUND = 12
QUERY_CONTENT_TOKENS = 16
QUERY_GENERIC_TOKENS = 4


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _mix(base: np.ndarray, noise: np.ndarray, cos: float) -> np.ndarray:
    """Unit vectors whose cosine with the unit `base` is about `cos` (noise is standard normal)."""
    noise = _unit(noise)
    return _unit(cos * base + np.sqrt(1 - cos**2) * noise)


@dataclass(frozen=True)
class World:
    """The shared sources: global direction, background vectors, topic concepts."""

    global_dir: np.ndarray  # (DIM,)
    background: np.ndarray  # (N_BACKGROUND, DIM)
    concepts: np.ndarray  # (N_TOPICS, CONCEPTS_PER_TOPIC, DIM)

    @classmethod
    def make(cls, seed: int) -> World:
        rng = np.random.default_rng([seed, 0])
        global_dir = _unit(rng.standard_normal(DIM))
        background = _mix(global_dir, rng.standard_normal((N_BACKGROUND, DIM)), 0.6)
        topics = _mix(global_dir, rng.standard_normal((N_TOPICS, DIM)), 0.25)
        noise = rng.standard_normal((N_TOPICS, CONCEPTS_PER_TOPIC, DIM))
        concepts = _mix(topics[:, None, :], noise, 0.55)
        return cls(global_dir, background, concepts)


def make_page(world: World, seed: int, page: int) -> np.ndarray:
    """(n, DIM) float32 unit vectors, n in 600..768, row-major on a grid ROW tokens wide."""
    rng = np.random.default_rng([seed, 1, page])
    n = int(rng.integers(600, 769))
    topics = rng.choice(N_TOPICS, size=int(rng.integers(1, 4)), replace=False)
    n_concepts = int(rng.integers(8, 17))
    weights = rng.dirichlet(np.ones(len(topics)))
    picked_topics = rng.choice(topics, size=n_concepts, p=weights)
    shared = world.concepts[picked_topics, rng.integers(0, CONCEPTS_PER_TOPIC, size=n_concepts)]
    own = _mix(
        shared[: min(4, n_concepts)],
        rng.standard_normal((min(4, n_concepts), DIM)),
        0.5,
    )
    content = np.concatenate([shared, own])
    # Contiguous runs of tokens (paragraphs, figures), each from one source; background between them.
    sources = np.empty((n, DIM), dtype=np.float32)
    position = 0
    background_share = rng.uniform(0.3, 0.6)
    while position < n:
        run = int(rng.integers(ROW // 2, 3 * ROW))
        if rng.random() < background_share:
            source = world.background[rng.integers(N_BACKGROUND)]
        else:
            source = content[rng.integers(len(content))]
        sources[position : position + run] = source
        position += run
    return _mix(sources, rng.standard_normal((n, DIM)), 0.75)


def make_query(world: World, seed: int, query: int, page_tokens: np.ndarray) -> np.ndarray:
    """(20, DIM) query tokens derived from one page's content tokens."""
    rng = np.random.default_rng([seed, 2, query])
    background_sim = (page_tokens @ world.background.T).max(axis=1)
    content = np.flatnonzero(background_sim < 0.6)
    if len(content) < QUERY_CONTENT_TOKENS:
        content = np.arange(len(page_tokens))
    picked = page_tokens[rng.choice(content, size=QUERY_CONTENT_TOKENS, replace=False)]
    tokens = _mix(picked, rng.standard_normal(picked.shape), 0.8)
    generic = _mix(world.global_dir[None, :], rng.standard_normal((QUERY_GENERIC_TOKENS, DIM)), 0.5)
    return np.concatenate([tokens, generic])


# --- page representations ----------------------------------------------------------------------


def mean_vector(tokens: np.ndarray) -> np.ndarray:
    """The former production prefetch vector: the mean of the rows, normalised."""
    return _unit(tokens.mean(axis=0))


def row_means(tokens: np.ndarray, rows_per_band: int = 1) -> np.ndarray:
    """Row pooling: the mean of each band of grid rows, normalised (about 27 vectors a page)."""
    band = ROW * rows_per_band
    starts = np.arange(0, len(tokens), band)
    sums = np.add.reduceat(tokens, starts, axis=0)
    return _unit(sums)

