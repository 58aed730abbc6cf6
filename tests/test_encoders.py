"""Encoders: real MiniLM, a tiny real-architecture ColQwen2 built offline, qdrant-edge BM25."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from rag.encoders.devices import EncoderLoadError, resolve_dtype
from rag.encoders.sparse import Bm25Encoder, merge_weighted
from rag.encoders.text import TextEncoder
from rag.models import SparseVector
from rag.settings import RagSettings

# --- text encoder (real all-MiniLM-L6-v2) ------------------------------------------------------


def _chunker(text_encoder: TextEncoder, words: int, overlap: int) -> TextEncoder:
    return TextEncoder(text_encoder.model, text_encoder.info, RagSettings(chunk_words=words, chunk_overlap=overlap))


@pytest.mark.parametrize(
    ("n_words", "expected_starts"),
    [
        (0, []),
        (5, [0]),
        (10, [0]),  # exactly one window: no second window inside the first
        (11, [0, 7]),
        (17, [0, 7]),  # the second window reaches the end: no third one inside it
        (18, [0, 7, 14]),
    ],
)
def test_chunk_windows(text_encoder: TextEncoder, n_words: int, expected_starts: list[int]) -> None:
    words = [f"w{i}" for i in range(n_words)]
    chunks = _chunker(text_encoder, words=10, overlap=3).chunk(" \n ".join(words))
    assert [chunk.split()[0] for chunk in chunks] == [f"w{i}" for i in expected_starts]
    assert all(len(chunk.split()) <= 10 for chunk in chunks)
    if chunks:
        assert chunks[-1].split()[-1] == words[-1]


def test_chunk_whitespace_only_and_overlap_not_smaller_than_window(text_encoder: TextEncoder) -> None:
    assert text_encoder.chunk("  \n\t ") == []
    chunks = _chunker(text_encoder, words=10, overlap=10).chunk(" ".join(f"w{i}" for i in range(12)))
    assert [chunk.split()[0] for chunk in chunks] == ["w0", "w1", "w2"]


def test_text_embeddings_shapes_and_normalisation(text_encoder: TextEncoder) -> None:
    assert text_encoder.info.dim == 384
    assert text_encoder.info.revision
    vectors = text_encoder.embed_documents(["granuloma", "caseous necrosis", "Reed-Sternberg cell"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert text_encoder.embed_documents([]).shape == (0, 384)
    query = text_encoder.embed_query("granuloma")
    assert query.shape == (384,)
    np.testing.assert_allclose(query, vectors[0], atol=1e-5)


def test_similar_sentences_score_higher(text_encoder: TextEncoder) -> None:
    query = text_encoder.embed_query("Caseating granulomas are typical of tuberculosis.")
    related, unrelated = text_encoder.embed_documents(
        [
            "Tuberculosis produces granulomas with caseous necrosis.",
            "The quarterly budget meeting was moved to Thursday afternoon.",
        ]
    )
    assert float(query @ related) > float(query @ unrelated) + 0.2


def test_unloadable_text_model_raises() -> None:
    from rag.encoders.text import load_text_encoder

    with pytest.raises(EncoderLoadError, match="no-such-org/no-such-model"):
        load_text_encoder(RagSettings(text_encoder="no-such-org/no-such-model", device="cpu"))


# --- page encoder (tiny random ColQwen2) -------------------------------------------------------


def _page(size: tuple[int, int], text: str, color: str = "white") -> Image.Image:
    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).text((20, 20), text, fill="black")
    return image


# Different sizes give different numbers of visual tokens, so a batch is padded.
PAGES = [
    _page((420, 560), "Granuloma, caseous necrosis"),
    _page((300, 300), "Reed-Sternberg cell", "lightyellow"),
    _page((560, 420), "Squamous cell carcinoma", "pink"),
    _page((200, 280), "Index"),
]


@pytest.fixture(scope="module")
def page_encoder(tiny_colqwen2_path: Path):
    from rag.encoders.page import load_page_encoder

    return load_page_encoder(RagSettings(page_encoder=str(tiny_colqwen2_path), device="cpu", page_batch_size=3))


def _assert_clean(multivectors: list[np.ndarray], dim: int) -> None:
    for vectors in multivectors:
        assert vectors.ndim == 2 and vectors.shape[1] == dim and len(vectors) > 0
        assert vectors.dtype == np.float32
        assert not np.isnan(vectors).any()
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_page_multivectors_drop_padding(page_encoder) -> None:
    batched = page_encoder.embed_pages(PAGES)
    _assert_clean(batched, page_encoder.info.dim)
    assert page_encoder.info.dim == 128
    assert len({len(v) for v in batched}) > 1, "pages of different sizes should give different token counts"
    # Each page alone (no padding at all) gives the same rows as inside the padded batch.
    for page, vectors in zip(PAGES, batched):
        (alone,) = page_encoder.embed_pages([page])
        assert alone.shape == vectors.shape
        np.testing.assert_allclose(alone, vectors, atol=1e-4)


def test_queries_of_different_lengths(page_encoder) -> None:
    texts = ["granuloma?", "What is the histology of squamous cell carcinoma of the lung in smokers?"]
    queries = page_encoder.embed_queries(texts)
    _assert_clean(queries, page_encoder.info.dim)
    assert len(queries[0]) < len(queries[1])
    (short_alone,) = page_encoder.embed_queries(texts[:1])
    np.testing.assert_allclose(short_alone, queries[0], atol=1e-4)


def test_query_images_and_page_vectors(page_encoder) -> None:
    from rag.encoders import PAGE, PAGE_CENTROIDS, PAGE_FDE, page_vector_specs, visual_vectors

    (image_query,) = page_encoder.embed_query_images([PAGES[1]])
    _assert_clean([image_query], page_encoder.info.dim)
    (page,) = page_encoder.embed_pages([PAGES[1]])
    np.testing.assert_allclose(image_query, page, atol=1e-4)
    dense, multi = visual_vectors(page, page_encoder.fde)
    specs = {spec.name: spec for spec in page_vector_specs(page_encoder.info.dim)}
    assert set(dense) | set(multi) == set(specs) == {PAGE, PAGE_FDE, PAGE_CENTROIDS}
    assert dense[PAGE_FDE].shape == (specs[PAGE_FDE].dim,) and specs[PAGE_FDE].distance == "dot"
    assert multi[PAGE] is page
    assert multi[PAGE_CENTROIDS].shape[1] == 128 and 1 <= len(multi[PAGE_CENTROIDS]) <= min(16, len(page))
    # The recorded layout names the candidate vectors, so an index built with another one is refused.
    assert page_encoder.info.pooling.startswith("multivector, MaxSim; prefetch MUVERA FDE 4096-d")
    assert page_encoder.fde.fingerprint() in page_encoder.info.pooling
    assert "stored as page turbo8, page_fde turbo8, page_centroids float16" in page_encoder.info.pooling
    assert [spec.datatype for spec in specs.values()] == ["turbo8", "turbo8", "float16"]


def test_token_pooling_reduces_vectors(tiny_colqwen2_path: Path, page_encoder) -> None:
    from rag.encoders.page import load_page_encoder

    pooling = load_page_encoder(RagSettings(page_encoder=str(tiny_colqwen2_path), device="cpu", token_pooling_factor=2))
    assert "pooling x2" in pooling.info.pooling
    full = page_encoder.embed_pages(PAGES[:2])
    pooled = pooling.embed_pages(PAGES[:2])
    _assert_clean(pooled, 128)
    for f, p in zip(full, pooled):
        assert len(p) <= len(f) // 2
    # Queries are never pooled.
    assert len(pooling.embed_query_images(PAGES[:1])[0]) == len(full[0])


def test_family_detection(tiny_colqwen2_path: Path) -> None:
    from rag.encoders.colpali import detect_family

    assert detect_family(str(tiny_colqwen2_path)).name == "colqwen2"
    assert detect_family("vidore/colqwen2.5-v0.2").name == "colqwen2.5"
    assert detect_family("vidore/colqwen2-v1.0").name == "colqwen2"
    assert detect_family("vidore/colSmol-256M").name == "colidefics3"
    assert detect_family("vidore/colpali-v1.3").name == "colpali"
    with pytest.raises(EncoderLoadError, match="not a known page-encoder family"):
        detect_family("bert-base-uncased")


def test_page_encoder_none_and_auto_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    from rag.encoders.page import load_page_encoder

    assert load_page_encoder(RagSettings(page_encoder="none")) is None
    with caplog.at_level(logging.WARNING, logger="rag.encoders.colpali"):
        assert load_page_encoder(RagSettings(page_encoder="auto", device="cpu")) is None
    ours = [r for r in caplog.records if r.name == "rag.encoders.colpali"]
    assert len(ours) == 1 and ours[0].levelno == logging.WARNING
    assert "Visual channel off" in ours[0].getMessage() and "ModernVBERT/colmodernvbert" in ours[0].getMessage()


def test_explicit_unloadable_page_model_raises(tmp_path: Path) -> None:
    from rag.encoders.page import load_page_encoder

    with pytest.raises(EncoderLoadError, match="vidore/colpali-v1.3"):
        load_page_encoder(RagSettings(page_encoder="vidore/colpali-v1.3", device="cpu"))
    empty = tmp_path / "colqwen2-empty"
    empty.mkdir()
    with pytest.raises(EncoderLoadError, match="colqwen2-empty"):
        load_page_encoder(RagSettings(page_encoder=str(empty), device="cpu"))


def test_dtype_choice() -> None:
    import torch

    assert resolve_dtype("auto", "cuda") == torch.bfloat16
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("float16", "cpu") == torch.float16


# --- BM25 (qdrant-edge) ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bm25() -> Bm25Encoder:
    return Bm25Encoder()


def test_bm25_stemming_case_and_folding(bm25: Bm25Encoder) -> None:
    assert bm25.embed_query("infections") == bm25.embed_query("Infection")
    assert bm25.embed_query("CAFÉ") == bm25.embed_query("cafe")
    assert bm25.embed_query("granuloma") != bm25.embed_query("necrosis")


def test_bm25_stopwords_ignored(bm25: Bm25Encoder) -> None:
    assert bm25.embed_query("the infection of a lung") == bm25.embed_query("infection lung")
    assert bm25.embed_query("the of and").indices == []


def test_bm25_document_and_query_values(bm25: Bm25Encoder) -> None:
    query = bm25.embed_query("granuloma granuloma necrosis")
    assert len(query.indices) == 2 and query.values == [1.0, 1.0]
    document = bm25.embed_document("granuloma granuloma granuloma necrosis")
    weights = dict(zip(document.indices, document.values))
    granuloma = bm25.embed_query("granuloma").indices[0]
    necrosis = bm25.embed_query("necrosis").indices[0]
    assert weights[granuloma] > weights[necrosis] > 0  # saturating TF, no IDF
    assert bm25.info.name == "bm25" and "avg_len=300" in bm25.info.revision


def test_merge_weighted() -> None:
    body = SparseVector(indices=[1, 5], values=[1.0, 2.0])
    heading = SparseVector(indices=[5, 9], values=[1.0, 1.0])
    merged = merge_weighted([(body, 1.0), (heading, 2.0)])
    assert merged == SparseVector(indices=[1, 5, 9], values=[1.0, 4.0, 2.0])
    assert merge_weighted([]) == SparseVector(indices=[], values=[])
