"""Every in-process page-encoder family: a tiny random-weight model of the real architecture, built
offline, loaded by path like a checkpoint, embedding pages and queries, and round-tripping through
the index (the embedded store, real PyMuPDF pages, real MiniLM)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tests.tiny_models as tiny
from indexer.jobs import index_pdf
from indexer.settings import IndexerSettings
from rag.encoders import Encoders
from rag.encoders.colpali import detect_family
from rag.encoders.page import load_page_encoder
from rag.encoders.sparse import Bm25Encoder
from rag.page_index import PageIndex
from rag.search import SearchQuery, search_pages
from tests.conftest import PATHOLOGY_PAGES, write_pathology_book

pytestmark = pytest.mark.slow

# family -> (builder, the dimension its colpali-engine class documents)
FAMILIES = {
    "colqwen3.5": (tiny.build_tiny_colqwen3_5, 128),
    "colqwen3": (tiny.build_tiny_colqwen3, 320),
    "colqwen2.5": (tiny.build_tiny_colqwen2_5, 128),
    "colqwen2": (tiny.build_tiny_colqwen2, 128),
    "colmodernvbert": (tiny.build_tiny_colmodernvbert, 128),
    "colidefics3": (tiny.build_tiny_colidefics3, 128),
    "colpali": (tiny.build_tiny_colpali, 128),
    "colpali-hf": (tiny.build_tiny_colpali_hf, 128),
}


def _assert_clean(multivectors: list[np.ndarray], dim: int) -> None:
    for vectors in multivectors:
        assert vectors.ndim == 2 and vectors.shape[0] > 0 and vectors.shape[1] == dim
        assert np.isfinite(vectors).all()  # padded positions (NaN with sdpa) were dropped
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_loads_embeds_and_round_trips_through_the_index(family: str, tmp_path: Path, text_encoder) -> None:
    build, dim = FAMILIES[family]
    path = build(tmp_path / f"tiny-{family}")
    assert detect_family(str(path)).name == family
    settings = IndexerSettings(
        _env_file=None, data_dir=tmp_path / "data", page_encoder=str(path), device="cpu", ocr=False, render_dpi=72
    )
    encoder = load_page_encoder(settings)
    assert (encoder.info.dim, encoder.info.runtime) == (dim, "in process")
    library = "transformers" if family.endswith("-hf") else "colpali_engine"
    assert encoder.info.input_format.startswith(f"{library} Col") and encoder.info.input_format.endswith("Processor")
    _assert_clean(encoder.embed_queries(["granuloma?", "a much longer query about Reed-Sternberg cells"]), dim)

    index = PageIndex(settings, encoders=Encoders(text=text_encoder, sparse=Bm25Encoder(), page=encoder))
    pdf = write_pathology_book(tmp_path / "essentials.pdf")
    report = index_pdf(index, pdf)
    assert (report.status, report.pages_indexed) == ("indexed", len(PATHOLOGY_PAGES))

    (cirrhosis,) = search_pages(index, SearchQuery(text="Cirrhosis", channels=["bm25"], top_k=1))
    page_image = index.images.open(cirrhosis.image_key)
    _assert_clean(encoder.embed_pages([page_image]), dim)
    # The page's own stored image as the query finds that page first.
    (by_image,) = search_pages(index, SearchQuery(image=page_image, channels=["image"], top_k=1))
    assert (cirrhosis.page, by_image.page) == (4, 4)
    assert search_pages(index, SearchQuery(text="Reed-Sternberg cells", channels=["page"], top_k=3))
    index.close()
