"""The one Settings object: read once (environment, `.env`), then passed down explicitly."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "pathorag"


class Settings(BaseSettings):
    """Every setting of pathorag. Environment variables use the prefix `PATHORAG_`."""

    model_config = SettingsConfigDict(env_prefix="PATHORAG_", env_file=".env", extra="ignore")

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Field(default_factory=_default_data_dir, description="Index, page images and jobs live here.")
    qdrant_url: str | None = Field(None, description="Qdrant server or cluster URL; unset = embedded engine.")
    qdrant_api_key: SecretStr | None = Field(None, description="API key for the Qdrant server.")
    collection_prefix: str = Field("pathorag", description="Prefix of the Qdrant collections.")

    # --- encoders ------------------------------------------------------------------------
    page_encoder: str = Field(
        "auto",
        description="ColPali-family page encoder: model name or local path; 'auto' (ColQwen2.5 on GPU, "
        "ColSmol-256M on CPU, visual channel off if it cannot be loaded) or 'none'.",
    )
    text_encoder: str = Field(
        "sentence-transformers/all-MiniLM-L6-v2", description="sentence-transformers model name or local path."
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="Torch device for the encoders.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Torch dtype for the page encoder ('auto': bfloat16 on GPU, float32 on CPU)."
    )
    page_batch_size: int = Field(4, ge=1, description="Pages per page-encoder batch.")
    text_batch_size: int = Field(64, ge=1, description="Chunks per text-encoder batch.")
    token_pooling_factor: int = Field(
        1, ge=1, description="Hierarchical token pooling of page multivectors (1 = off, 2 = halve vectors, ...)."
    )

    # --- pages ---------------------------------------------------------------------------
    render_dpi: int = Field(144, ge=36, le=600, description="DPI used to render page images.")
    max_page_pixels: int = Field(
        2_500_000, ge=10_000, description="Rendered pages are scaled down to at most this many pixels."
    )
    ocr: bool = Field(True, description="OCR pages with little or no text layer (needs Tesseract).")
    ocr_language: str = Field("eng", description="Tesseract language(s), e.g. 'eng' or 'eng+deu'.")
    ocr_min_chars: int = Field(40, ge=0, description="Pages with fewer text-layer characters are OCRed.")
    chunk_words: int = Field(120, ge=10, description="Words per text chunk of a page.")
    chunk_overlap: int = Field(40, ge=0, description="Words shared by consecutive chunks.")

    # --- search --------------------------------------------------------------------------
    fusion: Literal["rrf", "weighted"] = Field("weighted", description="How channel rankings are fused.")
    rrf_k: int = Field(60, ge=1, description="k of reciprocal-rank fusion.")
    weight_bm25: float = Field(1.0, ge=0, description="Fusion weight of the BM25 (lexical) channel.")
    weight_text: float = Field(1.0, ge=0, description="Fusion weight of the text-chunk (MiniLM) channel.")
    weight_page: float = Field(1.0, ge=0, description="Fusion weight of the page-image channel (text query).")
    weight_image: float = Field(1.0, ge=0, description="Fusion weight of the user's image (image query).")
    query_expansion: bool = Field(
        True, description="Add other spellings and historical/modern names of query terms to lexical search."
    )
    prefetch_limit: int = Field(100, ge=1, description="Candidates prefetched per channel before fusion.")
    top_k: int = Field(10, ge=1, le=200, description="Default number of pages returned by a search.")

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def page_images_dir(self) -> Path:
        return self.data_dir / "pages"

    @property
    def books_dir(self) -> Path:
        return self.data_dir / "books"
