"""Small stand-ins for a page multivector, used to find candidate pages before exact MaxSim.

Two representations, both computed in numpy from the page encoder's (n, dim) unit-row output:

- `centroids`: 16 spherical k-means centroids of the page's tokens, a (<=32, dim) multivector
  scored by MaxSim; it keeps a page's distinct content (a figure, a paragraph) that one mean
  vector loses under the page's background tokens.
- `fde_page` / `fde_query`: a MUVERA fixed dimensional encoding (Dhulipala et al., 2024), one
  dense vector whose dot product between a query and a page approximates their MaxSim (Chamfer)
  score, so a plain dense scan can shortlist pages.

Everything is deterministic: the FDE's random hyperplanes and projections come from a fixed seed
through numpy's legacy `RandomState` (whose streams numpy keeps stable across versions), and
their fingerprint is part of `describe()`, which the index records; an index whose FDE was built
with other parameters is refused (see `rag.page_index`) instead of returning poor candidates.
The measurements behind the sizes are in BENCHMARKS.md, "Retrieval at scale".
"""

from __future__ import annotations

import hashlib

import numpy as np

CENTROIDS = 16
KMEANS_ITERATIONS = 6
FDE_REPETITIONS = 16
FDE_BITS = 4  # 2**4 = 16 SimHash buckets per repetition
FDE_PROJECTION = 16  # dims each bucket is projected to
SEED = 0


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _one_hot(labels: np.ndarray, k: int) -> np.ndarray:
    return (labels[:, None] == np.arange(k)[None, :]).astype(np.float32)


def page_centroids(tokens: np.ndarray, k: int = CENTROIDS, iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """Spherical k-means centroids of a page's tokens: (<=k, dim) float32 unit rows.

    A page with at most `k` tokens keeps its tokens; clusters left empty are dropped.
    """
    tokens = _unit(np.asarray(tokens, dtype=np.float32))
    if len(tokens) <= k:
        return tokens
    rng = np.random.RandomState(SEED)
    centroids = tokens[np.sort(rng.choice(len(tokens), size=k, replace=False))]
    for _ in range(iterations):
        labels = np.argmax(tokens @ centroids.T, axis=1)
        sums = _one_hot(labels, k).T @ tokens
        counts = np.bincount(labels, minlength=k)
        centroids = _unit(np.where(counts[:, None] > 0, sums, centroids))
    labels = np.argmax(tokens @ centroids.T, axis=1)
    return centroids[np.unique(labels)]


class FixedDimensionalEncoder:
    """MUVERA FDE: a multivector of `dim`-d rows -> one `reps * 2**bits * proj`-d vector.

    For each repetition, `bits` random hyperplanes (SimHash) split space into 2**bits buckets. A
    page's block for a bucket is the mean of its tokens in it (an empty bucket takes the token
    nearest to it in Hamming distance), a query's block the sum of its tokens in it; each block is
    projected to `proj` dims by a random +-1 matrix. Page and query must use the same encoder.
    """

    def __init__(
        self, dim: int, reps: int = FDE_REPETITIONS, bits: int = FDE_BITS, proj: int = FDE_PROJECTION, seed: int = SEED
    ) -> None:
        rng = np.random.RandomState(seed)
        self.token_dim, self.reps, self.bits, self.proj, self.seed = dim, reps, bits, proj, seed
        self.hyperplanes = rng.standard_normal((reps, dim, bits)).astype(np.float32)
        signs = np.where(rng.random_sample((reps, dim, proj)) < 0.5, -1.0, 1.0).astype(np.float32)
        self.projections = signs / np.float32(np.sqrt(proj))
        self._powers = (1 << np.arange(bits)).astype(np.int64)
        self._bucket_bits = (np.arange(1 << bits)[:, None] & self._powers) > 0

    @property
    def dim(self) -> int:
        return self.reps * (1 << self.bits) * self.proj

    def fingerprint(self) -> str:
        """Short hash of the random matrices: differs whenever the encoding would."""
        digest = hashlib.sha256(self.hyperplanes.tobytes() + self.projections.tobytes())
        return digest.hexdigest()[:8]

    def describe(self) -> str:
        return (
            f"MUVERA FDE {self.dim}-d ({self.reps} reps x {1 << self.bits} buckets x {self.proj} dims, "
            f"seed {self.seed}, {self.fingerprint()})"
        )

    def page(self, tokens: np.ndarray) -> np.ndarray:
        """(fde dim,) float32 encoding of a page's (n, dim) tokens."""
        return self._encode(np.asarray(tokens, dtype=np.float32), page=True)

    def query(self, tokens: np.ndarray) -> np.ndarray:
        """(fde dim,) float32 encoding of a query's (n, dim) tokens."""
        return self._encode(np.asarray(tokens, dtype=np.float32), page=False)

    def _encode(self, tokens: np.ndarray, page: bool) -> np.ndarray:
        if tokens.ndim != 2 or tokens.shape[1] != self.token_dim or not len(tokens):
            raise ValueError(f"expected (n >= 1, {self.token_dim}) tokens, got shape {tokens.shape}")
        buckets = 1 << self.bits
        out = np.zeros((self.reps, buckets, self.proj), dtype=np.float32)
        for r in range(self.reps):
            bits = (tokens @ self.hyperplanes[r]) > 0  # (n, bits)
            ids = bits.astype(np.int64) @ self._powers
            sums = _one_hot(ids, buckets).T @ tokens
            if page:
                counts = np.bincount(ids, minlength=buckets)
                empty = np.flatnonzero(counts == 0)
                if len(empty):
                    hamming = (self._bucket_bits[empty][:, None, :] != bits[None, :, :]).sum(-1)
                    sums[empty] = tokens[np.argmin(hamming, axis=1)]
                    counts[empty] = 1
                sums /= counts[:, None]
            out[r] = sums @ self.projections[r]
        return out.reshape(-1)


def describe_prefetch(dim: int) -> str:
    """The candidate-finding layout for `dim`-d tokens; the index records it with the page encoder."""
    fde = FixedDimensionalEncoder(dim).describe()
    return f"prefetch {fde} -> {CENTROIDS} k-means centroids ({KMEANS_ITERATIONS} iterations)"
