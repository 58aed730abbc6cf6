"""The server's settings: every setting of pathorag (the server runs the agent and the indexer)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from agent.settings import AgentSettings
from indexer.settings import IndexerSettings


class ServerSettings(AgentSettings, IndexerSettings):
    """Every setting of pathorag: the agent's, the indexer's, rag's, and the HTTP server's own."""

    # --- server --------------------------------------------------------------------
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
    request_body_timeout_s: float = Field(
        30.0, gt=0, description="Longest wait for the next piece of a request body; a stalled upload is answered 408."
    )
    request_timeout_s: float = Field(300.0, gt=0, description="Time limit of one question over HTTP, in seconds.")
    max_questions_in_flight: int = Field(
        32, ge=1, description="Questions answered at once over HTTP (ask and chat); more are refused with 503 and Retry-After."
    )
    image_url_hosts: str = Field(
        "", description="Comma-separated hosts that remote image URLs may come from; empty = only data URLs."
    )
    public_url: str | None = Field(
        None, description="The server's address as readers' browsers reach it (e.g. https://pathorag.example.org), "
        "for the page links in answers; unset = the address each request came to."
    )
    page_link_secret: SecretStr | None = Field(
        None, description="Key of the signed page links in answers (HMAC); unset = a random key per start "
        "(links end with a restart; replicas behind one address need one shared key)."
    )
    page_link_ttl_s: int = Field(
        3600, ge=60, le=7 * 86_400, description="How long a signed page link opens its page without an API key, in seconds."
    )
    image_url_timeout_s: float = Field(
        10.0, gt=0, le=300, description="Time limit for fetching one remote image URL (allowed hosts only), in seconds."
    )
