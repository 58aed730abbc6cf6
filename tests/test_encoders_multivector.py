"""The visual channel's candidate vectors: k-means centroids and the MUVERA FDE (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from rag.encoders.multivector import CENTROIDS, FixedDimensionalEncoder, describe_prefetch, page_centroids

DIM = 128


def _unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered_page(rng: np.random.Generator, n: int, sources: int = 12) -> np.ndarray:
    """Tokens near a few source directions, as a page's paragraphs and figures are."""
    centres = _unit_rows(rng, sources)
    tokens = centres[rng.integers(0, sources, n)] + 0.4 * _unit_rows(rng, n)
    return tokens / np.linalg.norm(tokens, axis=1, keepdims=True)


def _maxsim(query: np.ndarray, page: np.ndarray) -> float:
    return float((query @ page.T).max(axis=1).sum())


def test_centroids_shape_norm_and_determinism() -> None:
    page = _clustered_page(np.random.default_rng(0), 700)
    centroids = page_centroids(page)
    assert centroids.dtype == np.float32 and centroids.shape[1] == DIM and 1 <= len(centroids) <= CENTROIDS
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(page_centroids(page.copy()), centroids)
    # Each token is close to some centroid: MaxSim against the centroids approximates MaxSim against the page.
    assert (page @ centroids.T).max(axis=1).mean() > 0.85


def test_centroids_of_a_short_page_are_its_tokens() -> None:
    page = _unit_rows(np.random.default_rng(1), CENTROIDS)
    np.testing.assert_allclose(page_centroids(page), page, atol=1e-6)
    assert len(page_centroids(_unit_rows(np.random.default_rng(1), CENTROIDS + 1))) <= CENTROIDS


def test_fde_shape_and_determinism() -> None:
    rng = np.random.default_rng(2)
    page, query = _clustered_page(rng, 650), _unit_rows(rng, 20)
    first, again = FixedDimensionalEncoder(DIM), FixedDimensionalEncoder(DIM)
    assert first.dim == 16 * 16 * 16 == 4096
    for encode in ("page", "query"):
        tokens = page if encode == "page" else query
        vector = getattr(first, encode)(tokens)
        assert vector.shape == (4096,) and vector.dtype == np.float32 and np.isfinite(vector).all()
        np.testing.assert_array_equal(getattr(again, encode)(tokens), vector)  # index and query sides agree
    assert first.fingerprint() == again.fingerprint()
    assert first.describe() == again.describe() and first.fingerprint() in describe_prefetch(DIM)
    other = FixedDimensionalEncoder(DIM, seed=1)
    assert other.fingerprint() != first.fingerprint()
    assert FixedDimensionalEncoder(64).describe() != first.describe()


def test_fde_dot_product_tracks_maxsim() -> None:
    """The FDE scores rank the page a query was drawn from first, and correlate with exact MaxSim."""
    rng = np.random.default_rng(3)
    fde = FixedDimensionalEncoder(DIM)
    pages = [_clustered_page(rng, int(rng.integers(300, 500))) for _ in range(40)]
    page_fdes = np.stack([fde.page(page) for page in pages])
    for target in (0, 17, 39):
        picked = pages[target][rng.choice(len(pages[target]), 12, replace=False)]
        query = picked + 0.3 * _unit_rows(rng, 12)
        query /= np.linalg.norm(query, axis=1, keepdims=True)
        approx = page_fdes @ fde.query(query)
        exact = np.array([_maxsim(query, page) for page in pages])
        assert int(np.argmax(approx)) == int(np.argmax(exact)) == target
        assert np.corrcoef(approx, exact)[0, 1] > 0.5


def test_fde_rejects_wrong_shapes() -> None:
    fde = FixedDimensionalEncoder(DIM)
    for bad in (np.zeros((0, DIM)), np.zeros((4, 64)), np.zeros(DIM)):
        with pytest.raises(ValueError, match="tokens"):
            fde.query(bad)
