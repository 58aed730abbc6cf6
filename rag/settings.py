"""The settings rag reads: storage, encoders and search. The packages above extend them with their own.

Each package declares its settings as a subclass of the settings of the packages it builds on, so a
function takes the settings of its own package and sees nothing of the packages above it. Every
field is read from the environment (prefix `PATHORAG_`) or `.env`; the server's `ServerSettings`
composes them all. Read once, then passed down explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "pathorag"


class RagSettings(BaseSettings):
    """Storage, encoders and search. Environment variables use the prefix `PATHORAG_`."""

    model_config = SettingsConfigDict(env_prefix="PATHORAG_", env_file=".env", extra="ignore")

    # --- storage -------------------------------------------------------------------
    data_dir: Path = Field(default_factory=_default_data_dir, description="Index, page images and jobs live here.")
    qdrant_url: str | None = Field(None, description="Qdrant server or cluster URL; unset = embedded engine.")
    qdrant_api_key: SecretStr | None = Field(None, description="API key for the Qdrant server.")
    collection_prefix: str = Field("pathorag", description="Prefix of the Qdrant collections.")
    qdrant_shard_number: int = Field(
        1, ge=1, description="Server backend: shards of the pages collection, set when pathorag creates it "
        "(on a cluster about two per node; it cannot be changed later without resharding)."
    )
    qdrant_replication_factor: int = Field(
        1, ge=1, description="Server backend: copies of every shard (2 keeps serving with one node down)."
    )
    qdrant_write_consistency_factor: int = Field(
        1, ge=1, description="Server backend: replicas that must confirm a write before it returns."
    )
    qdrant_page_vectors_on_disk: bool = Field(
        False, description="Server backend: keep the page-image multivectors (`page`, about 88 KB a page) memory-mapped "
        "on disk instead of in RAM (the FDE and centroids stay in RAM); saves most of the memory, costs rerank time "
        "(BENCHMARKS.md, \"Retrieval at scale\")."
    )
    qdrant_fde_hnsw: bool = Field(
        False, description="Server backend: build an HNSW graph on the FDE vector (the first visual stage) instead of "
        "scanning it; for shards of several hundred thousand pages."
    )

    # --- encoders ------------------------------------------------------------------
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
    chunk_words: int = Field(80, ge=10, description="Words per text chunk of a page.")
    chunk_overlap: int = Field(40, ge=0, description="Words shared by consecutive chunks.")

    # --- search --------------------------------------------------------------------
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
    weight_figure: float = Field(
        1.0, ge=0, description="Fusion weight of the user's image against the pages' figure crops (image query)."
    )
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

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def page_images_dir(self) -> Path:
        return self.data_dir / "pages"

    @property
    def page_words_dir(self) -> Path:
        return self.data_dir / "words"

    @property
    def books_dir(self) -> Path:
        return self.data_dir / "books"
