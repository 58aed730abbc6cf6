"""Shared pytest fixtures."""

from __future__ import annotations

import os

# Model hubs are unreachable here: fail fast instead of waiting on the network. huggingface_hub reads
# this at import time, so it is set before any test module imports transformers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_colqwen2_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight ColQwen2 saved to disk once per session (load it with `page_encoder=str(path)`)."""
    from tests.tiny_models import build_tiny_colqwen2

    return build_tiny_colqwen2(tmp_path_factory.mktemp("tiny-colqwen2"))


@pytest.fixture(scope="session")
def text_encoder():
    """The real all-MiniLM-L6-v2 text encoder (offline package), loaded once per session."""
    from rag.encoders.text import load_text_encoder
    from rag.settings import RagSettings

    return load_text_encoder(RagSettings(text_encoder="sentence-transformers/all-MiniLM-L6-v2"))


@pytest.fixture(scope="session")
def tiny_page_encoder(tiny_colqwen2_path: Path):
    """The tiny ColQwen2 loaded as a page encoder on the CPU, once per session."""
    from rag.encoders.page import load_page_encoder
    from rag.settings import RagSettings

    return load_page_encoder(RagSettings(_env_file=None, page_encoder=str(tiny_colqwen2_path), device="cpu"))


@pytest.fixture(scope="session")
def text_only_encoders(text_encoder):
    """Encoders of an index built with `page_encoder="none"`: MiniLM text chunks and BM25, no visual channel."""
    from rag.encoders import Encoders
    from rag.encoders.sparse import Bm25Encoder

    return Encoders(text=text_encoder, sparse=Bm25Encoder(), page=None)


@pytest.fixture(scope="session")
def visual_encoders(text_encoder, tiny_page_encoder):
    """Encoders of an index built with the tiny ColQwen2 (`page_encoder=str(tiny_colqwen2_path)`)."""
    from rag.encoders import Encoders
    from rag.encoders.sparse import Bm25Encoder

    return Encoders(text=text_encoder, sparse=Bm25Encoder(), page=tiny_page_encoder)


# --- a small pathology textbook: one distinct topic per page ---------------------------------

# (heading, body) per page; page n of the book is PATHOLOGY_PAGES[n - 1].
PATHOLOGY_PAGES = [
    (
        "Granulomatous inflammation",
        "A granuloma is a compact aggregate of epithelioid macrophages, often rimmed by lymphocytes. "
        "Langhans giant cells have nuclei arranged in a horseshoe at the periphery. Sarcoidosis forms "
        "non-necrotizing granulomas in the hilar lymph nodes.",
    ),
    (
        "Hodgkin lymphoma",
        "Reed-Sternberg cells are large binucleate cells with prominent owl-eye nucleoli. They express "
        "CD15 and CD30 and sit in a background of reactive lymphocytes, eosinophils and plasma cells.",
    ),
    (
        "Caseous necrosis",
        "Caseous necrosis is a cheese-like, friable white necrosis typical of tuberculous infection. "
        "Microscopically the necrotic focus is amorphous granular pink debris without cell outlines.",
    ),
    (
        "Cirrhosis",
        "Cirrhosis of the liver converts the normal architecture into regenerative parenchymal nodules "
        "surrounded by dense fibrous septa. Chronic alcohol abuse and viral hepatitis are common causes.",
    ),
    (
        "Glomerulonephritis",
        "Rapidly progressive glomerulonephritis shows crescents of proliferating parietal epithelial "
        "cells and macrophages filling Bowman space in most glomeruli of the kidney.",
    ),
    (
        "Squamous cell carcinoma",
        "Squamous cell carcinoma of the lung forms keratin pearls and shows intercellular bridges "
        "between polygonal tumour cells with abundant eosinophilic cytoplasm.",
    ),
]
PATHOLOGY_TOC = [
    (1, "Inflammation", 1),
    (2, "Granulomatous inflammation", 1),
    (1, "Hematopathology", 2),
    (2, "Hodgkin lymphoma", 2),
    (1, "Cell injury", 3),
    (2, "Caseous necrosis", 3),
    (1, "Liver", 4),
    (1, "Kidney", 5),
    (1, "Lung", 6),
]
PATHOLOGY_FIRST_LABEL = 101  # printed page numbers start at 101


def write_case_book(path: Path, pages: int) -> Path:
    """A long book: page n reads "Case n." and then the topic of the pathology book's page n % 6."""
    from tests.pdf_factory import write_text_pdf

    topics = [body for _, body in PATHOLOGY_PAGES]
    return write_text_pdf(path, [f"Case {n}. {topics[n % len(topics)]}" for n in range(1, pages + 1)])


def write_pathology_book(path: Path, title: str = "Essentials of Pathology") -> Path:
    """The six-page pathology book above, with an outline, printed page labels and a title."""
    from tests.pdf_factory import PageSpec, write_text_pdf

    return write_text_pdf(
        path,
        [PageSpec(text=body, heading=heading) for heading, body in PATHOLOGY_PAGES],
        toc=PATHOLOGY_TOC,
        labels=[{"startpage": 0, "style": "D", "firstpagenum": PATHOLOGY_FIRST_LABEL}],
        metadata={"title": title},
    )


# --- a real vLLM server (CPU build, own venv) serving a tiny random-weight Qwen2-VL -------------


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory):
    """A vLLM OpenAI-compatible server on 127.0.0.1 serving the tiny Qwen2-VL of `tests/tiny_vlm.py`.

    Started once per session; yields a `tests.vllm_server.VllmServer`: `.base_url` (".../v1"),
    `.model` ("tiny-vlm"), `.log_path`, `.started_in_s`. Skips when the vLLM venv
    (`PATHORAG_VLLM_PYTHON`, else the default of `scripts/setup_vllm_cpu.sh`) is missing or broken.
    """
    from tests.vllm_server import default_vllm_python, start_vllm, vllm_python_problem

    python = default_vllm_python()
    problem = vllm_python_problem(python)
    if problem:
        pytest.skip(
            f"no working vLLM CPU venv ({problem}); run `bash scripts/setup_vllm_cpu.sh` "
            "(or point PATHORAG_VLLM_PYTHON at a python that imports vllm)"
        )
    from tests.tiny_vlm import build_tiny_qwen2_vl

    root = tmp_path_factory.mktemp("vllm")
    model_dir = build_tiny_qwen2_vl(root / "tiny-qwen2-vl")
    server = start_vllm(python, model_dir, log_path=root / "vllm.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def vlm():
    """A scripted OpenAI-compatible chat model on loopback (tests.scripted_vlm), one per test module."""
    from tests.scripted_vlm import ScriptedVLM

    server = ScriptedVLM()
    yield server
    server.close()
