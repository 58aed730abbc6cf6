"""The settings the indexer adds to rag's: how pages are rendered and read."""

from __future__ import annotations

from pydantic import Field

from rag.settings import RagSettings


class IndexerSettings(RagSettings):
    """rag's settings and the indexer's: rendering and OCR of pages."""

    # --- pages ---------------------------------------------------------------------
    render_dpi: int = Field(144, ge=36, le=600, description="DPI used to render page images.")
    max_page_pixels: int = Field(
        2_500_000, ge=10_000, description="Rendered pages are scaled down to at most this many pixels."
    )
    ocr: bool = Field(True, description="OCR pages with little or no text layer (needs Tesseract).")
    ocr_language: str = Field("eng", description="Tesseract language(s), e.g. 'eng' or 'eng+deu'.")
    ocr_min_chars: int = Field(40, ge=0, description="Pages with fewer text-layer characters are OCRed.")
    min_free_disk_mb: int = Field(
        256,
        ge=0,
        description="Indexing stops with an error (the book stays hidden; a rerun resumes it) before a page batch "
        "when the disk of the data directory has less free space than this, in MiB.",
    )
