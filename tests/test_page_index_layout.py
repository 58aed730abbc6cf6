"""An index built with the old visual layout (one mean-pooled prefetch vector) is refused, then rebuilt by reindex."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import indexer.jobs
from indexer.jobs import index_pdf, reindex
from indexer.settings import IndexerSettings
from rag.encoders import BM25, PAGE, PAGE_CENTROIDS, PAGE_FDE, TEXT, Encoders
from rag.page_index import EncoderMismatchError, PageIndex
from rag.search import SearchQuery, search_pages
from rag.store import VectorSpec
from tests.conftest import PATHOLOGY_PAGES, write_pathology_book

OLD_POOLING = "multivector, MaxSim"  # what the page encoder recorded before the FDE + centroid layout


def _old_layout_specs(self: Encoders) -> list[VectorSpec]:
    dim = self.page.info.dim
    return [
        VectorSpec(TEXT, "multi", self.text.info.dim),
        VectorSpec(BM25, "sparse"),
        VectorSpec(PAGE, "multi", dim, index=False, datatype="float16"),
        VectorSpec("page_pooled", "dense", dim),
    ]


def _old_layout_vectors(tokens: np.ndarray, fde: object) -> tuple[dict, dict]:
    mean = tokens.mean(axis=0)
    return {"page_pooled": mean / np.linalg.norm(mean)}, {PAGE: tokens}


def _stored_vectors(settings: IndexerSettings) -> set[str]:
    config = json.loads((settings.index_dir / "pages" / "edge_config.json").read_text())
    return set(config["vectors"]) | set(config["sparse_vectors"])


def test_old_visual_layout_is_refused_until_reindex(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, visual_encoders: Encoders, tiny_colqwen2_path: Path
) -> None:
    settings = IndexerSettings(
        _env_file=None, data_dir=tmp_path / "data", page_encoder=str(tiny_colqwen2_path), ocr=False, render_dpi=72
    )
    pdf = write_pathology_book(tmp_path / "essentials.pdf")
    # Build the index as the previous release did: `page` + mean-pooled `page_pooled`, old description.
    with monkeypatch.context() as old:
        old.setattr(visual_encoders.page, "info", visual_encoders.page.info.model_copy(update={"pooling": OLD_POOLING}))
        old.setattr(Encoders, "vector_specs", _old_layout_specs)
        old.setattr(indexer.jobs, "visual_vectors", _old_layout_vectors)
        old_index = PageIndex(settings, encoders=visual_encoders)
        built = index_pdf(old_index, pdf)
        old_index.close()
    assert built.ok and _stored_vectors(settings) == {TEXT, BM25, PAGE, "page_pooled"}

    index = PageIndex(settings, encoders=visual_encoders)
    try:
        with pytest.raises(EncoderMismatchError, match="pathorag index reindex") as caught:
            search_pages(index, SearchQuery(text="granuloma"))
        message = str(caught.value)
        assert f"page: index has {tiny_colqwen2_path}" in message and f", {OLD_POOLING})" in message
        assert "MUVERA FDE" in message  # what the settings give now
    finally:
        index.close()

    reports = reindex(settings)

    assert [(r.status, r.pages_indexed) for r in reports] == [("indexed", len(PATHOLOGY_PAGES))]
    assert _stored_vectors(settings) == {TEXT, BM25, PAGE, PAGE_FDE, PAGE_CENTROIDS}
    index = PageIndex(settings, encoders=visual_encoders)
    try:
        hits = search_pages(index, SearchQuery(text="Reed-Sternberg cells owl-eye nucleoli", channels=("page",)))
        assert len(hits) == len(PATHOLOGY_PAGES) and all(set(h.channel_scores) == {"page"} for h in hits)
    finally:
        index.close()
