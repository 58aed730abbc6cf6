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
        description="ColPali-family page encoder: model name or local path; 'auto' (in process: ColQwen3 4B on GPU, "
        "ColModernVBERT on CPU, visual channel off if it cannot be loaded; served: the one model the server lists) "
        "or 'none'. With page_encoder_url, the name the encoder server serves the model under.",
    )
    page_encoder_url: str | None = Field(
        None,
        description="Base URL of a vLLM server running the page encoder with `--runner pooling` (e.g. "
        "http://encoder:8000, or a load balancer in front of several); unset = the encoder runs in process.",
    )
    page_encoder_api_key: SecretStr | None = Field(None, description="API key of the page-encoder server.")
    page_encoder_timeout_s: float = Field(60.0, gt=0, description="Time limit of one page-encoder request, in seconds.")
    page_encoder_max_retries: int = Field(
        2, ge=0, description="Retries (with backoff) of a failed page-encoder request; then the batch fails."
    )
    page_encoder_concurrency: int = Field(
        8, ge=1, description="Page-encoder requests in flight at once per process (the server batches them)."
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
    chunk_words: int = Field(80, ge=10, description="Words per text chunk of a page.")
    chunk_overlap: int = Field(40, ge=0, description="Words shared by consecutive chunks.")

    # --- search --------------------------------------------------------------------------
    fusion: Literal["peaked", "weighted", "rrf"] = Field(
        "peaked",
        description="How channel rankings are fused: 'peaked' (distribution-based scores, each channel weighted "
        "by how clearly its best page stands out for this query), 'weighted' (the fixed weights alone) or 'rrf'.",
    )
    rrf_k: int = Field(60, ge=1, description="k of reciprocal-rank fusion.")
    weight_bm25: float = Field(1.0, ge=0, description="Fusion weight of the BM25 (lexical) channel.")
    weight_text: float = Field(0.7, ge=0, description="Fusion weight of the text-chunk (MiniLM) channel.")
    weight_page: float = Field(1.0, ge=0, description="Fusion weight of the page-image channel (text query).")
    weight_image: float = Field(1.0, ge=0, description="Fusion weight of the user's image (image query).")
    query_expansion: bool = Field(
        False,
        description="Add other spellings and historical/modern names of query terms that are missing from "
        "the indexed text to lexical search.",
    )
    prefetch_limit: int = Field(100, ge=1, description="Candidates prefetched per channel before fusion.")
    visual_prefetch_limit: int = Field(
        50,
        ge=1,
        description="Candidates the page and image channels bring to fusion; each is scored by exact MaxSim, "
        "the costliest step of a search (about 0.3 ms a page on 2 CPU cores).",
    )
    top_k: int = Field(10, ge=1, le=200, description="Default number of pages returned by a search.")

    # --- agent ---------------------------------------------------------------------------
    vlm_base_url: str | None = Field(
        None, description="OpenAI-compatible base URL of the answering VLM (e.g. vLLM's http://host:8000/v1); "
        "unset = evidence-only answers."
    )
    vlm_model: str = Field("", description="Model name of the answering VLM (required with vlm_base_url).")
    vlm_api_key: SecretStr | None = Field(None, description="API key of the answering VLM endpoint.")
    router_base_url: str | None = Field(None, description="Base URL of the router model; unset = the answerer's.")
    router_model: str = Field("", description="Model name of the router; empty = the answerer's.")
    router_api_key: SecretStr | None = Field(None, description="API key of the router endpoint; unset = the answerer's.")
    vlm_timeout_s: float = Field(60.0, gt=0, description="Timeout of one VLM request, in seconds.")
    vlm_max_retries: int = Field(2, ge=0, description="Retries (with backoff) of a failed VLM request.")
    vlm_concurrency: int = Field(4, ge=1, description="VLM requests in flight at once, across all questions.")
    vlm_temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature of VLM calls.")
    agent_max_turns: int = Field(3, ge=1, le=10, description="Search rounds per question (1 = no reflection).")
    agent_pages_per_query: int = Field(5, ge=1, le=50, description="Pages kept from each sub-query's search.")
    agent_pages_per_call: int = Field(4, ge=1, le=16, description="Page images shown to the VLM in one call.")
    agent_image_pixels: int = Field(
        1_003_520, ge=4_096, description="Images sent to the VLM are scaled down to at most this many pixels."
    )
    agent_max_output_tokens: int = Field(1024, ge=16, description="Completion tokens allowed per VLM call.")
    agent_max_tokens: int = Field(
        100_000, ge=1_000, description="Prompt + completion tokens per question; no new search round beyond it."
    )
    agent_max_seconds: float = Field(
        180.0, gt=0, description="Wall-clock budget per question; when spent, the agent answers from evidence."
    )
    agent_max_question_chars: int = Field(4_000, ge=10, description="Longest accepted question, in characters.")
    agent_max_images: int = Field(4, ge=0, description="Most user images per question.")
    agent_max_image_bytes: int = Field(20_000_000, ge=1_000, description="Largest accepted user image file.")
    agent_max_image_decoded_pixels: int = Field(
        50_000_000, ge=10_000, description="Largest accepted decoded user image (decompression-bomb guard)."
    )
    agent_min_text_similarity: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Evidence-only mode: when no retrieved page's text is this similar (text-encoder cosine) to a query, the answer says the evidence is insufficient and picks no option (0 = never). Set for all-MiniLM-L6-v2; `pathorag eval --mode retrieval` reports the in-corpus 5th percentile for another encoder or library.",
    )
    agent_search_concurrency: int = Field(4, ge=1, description="Sub-query searches run at once.")
    agent_log_content: bool = Field(
        False, description="Log questions and model replies (off: patient data stays out of logs)."
    )
    checkpoint_postgres_url: SecretStr | None = Field(
        None, description="Postgres URL for conversation threads; unset = SQLite under data_dir."
    )

    # --- server --------------------------------------------------------------------------
    api_keys: SecretStr | None = Field(
        None, description="Comma-separated bearer tokens accepted by the HTTP server (ask, chat, pages, books list)."
    )
    admin_api_keys: SecretStr | None = Field(
        None, description="Comma-separated bearer tokens that may also add and remove books."
    )
    allow_anonymous: bool = Field(
        False, description="Serve requests without a key (local use only; without keys the server refuses to start)."
    )
    server_host: str = Field("127.0.0.1", description="Address `pathorag serve` listens on.")
    server_port: int = Field(8000, ge=1, le=65535, description="Port `pathorag serve` listens on.")
    server_model_name: str = Field("pathorag", description="Model id the OpenAI-compatible API lists and answers as.")
    cors_origins: str = Field("", description="Comma-separated origins allowed by CORS ('*' = any); empty = CORS off.")
    max_request_bytes: int = Field(
        30_000_000, ge=1_000, description="Largest accepted request body (uploads of books excepted)."
    )
    max_upload_bytes: int = Field(500_000_000, ge=1_000, description="Largest accepted PDF upload.")
    request_timeout_s: float = Field(300.0, gt=0, description="Time limit of one question over HTTP, in seconds.")
    max_questions_in_flight: int = Field(
        32, ge=1, description="Questions answered at once over HTTP (ask and chat); more are refused with 503 and Retry-After."
    )
    image_url_hosts: str = Field(
        "", description="Comma-separated hosts that remote image URLs may come from; empty = only data URLs."
    )
    image_url_timeout_s: float = Field(
        10.0, gt=0, le=300, description="Time limit for fetching one remote image URL (allowed hosts only), in seconds."
    )

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def page_images_dir(self) -> Path:
        return self.data_dir / "pages"

    @property
    def books_dir(self) -> Path:
        return self.data_dir / "books"
