"""Shared by the agent tests: one small real index (MiniLM + BM25 on qdrant-edge) and agent settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from indexer.jobs import BookMeta, index_pdf
from rag.page_index import PageIndex
from server.settings import ServerSettings
from tests.conftest import write_pathology_book

HODGKIN_PAGE_LABEL = "102"  # the page on Reed-Sternberg cells
MCQ_QUESTION = "Which cells are characteristic of Hodgkin lymphoma?"
MCQ_CHOICES = ["Reed-Sternberg cells with owl-eye nucleoli", "Langhans giant cells", "Keratin pearls"]


@dataclass
class AgentLibrary:
    index: PageIndex
    settings: ServerSettings
    book_id: str


def agent_settings(data_dir: Path, **overrides) -> ServerSettings:
    base = dict(
        _env_file=None,
        data_dir=data_dir,
        page_encoder="none",
        ocr=False,
        render_dpi=72,
        vlm_max_retries=0,
        vlm_timeout_s=10,
    )
    return ServerSettings(**(base | overrides))


@pytest.fixture(scope="session")
def agent_library(tmp_path_factory: pytest.TempPathFactory, text_only_encoders) -> AgentLibrary:
    """The six-page pathology book indexed without a page encoder; shared read-only by the agent tests."""
    root = tmp_path_factory.mktemp("agent-index")
    settings = agent_settings(root / "data")
    index = PageIndex(settings, encoders=text_only_encoders)
    report = index_pdf(index, write_pathology_book(root / "essentials.pdf"), BookMeta(organ_systems=["general"]))
    assert report.ok
    yield AgentLibrary(index, settings, report.book_id)
    index.close()
