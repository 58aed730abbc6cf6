"""The settings the agent adds to rag's: its models, budgets and conversation threads."""

from __future__ import annotations

from pydantic import Field, SecretStr

from rag.settings import RagSettings


class AgentSettings(RagSettings):
    """rag's settings and the agent's: the answering and routing models, per-question budgets, threads."""

    # --- agent ---------------------------------------------------------------------
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
        0.4,
        ge=0,
        le=1,
        description="Evidence-only mode: when no retrieved page's text is this similar (text-encoder cosine) to a query, the answer says the evidence is insufficient and picks no option (0 = never). Set for all-MiniLM-L6-v2; `pathorag eval --mode retrieval` reports the in-corpus 5th percentile for another encoder or library.",
    )
    agent_min_vocabulary_coverage: float = Field(
        0.8,
        ge=0,
        le=1,
        description="Evidence-only mode: when fewer than this share of the distinct words of the question and its options occur on any indexed page, the answer says the evidence is insufficient, names the unknown words and picks no option (0 = never).",
    )
    agent_search_concurrency: int = Field(4, ge=1, description="Sub-query searches run at once.")
    agent_log_content: bool = Field(
        False, description="Log questions and model replies (off: patient data stays out of logs)."
    )
    checkpoint_postgres_url: SecretStr | None = Field(
        None, description="Postgres URL for conversation threads; unset = SQLite under data_dir."
    )
