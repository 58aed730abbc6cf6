"""The HTTP protocol: pydantic request and response models, apart from the routes that serve them."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.state import AgentResult, Citation, TokenUsage
from rag.models import BookRecord, BookStatus, FigureRecord

# --- errors ---------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    message: str
    type: str


class ErrorResponse(BaseModel):
    error: ErrorBody


# --- ask ------------------------------------------------------------------------------------------


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(description="The pathology question.")
    images: list[str] = Field(default_factory=list, description="Images as base64 data URLs (data:image/png;base64,...).")
    choices: list[str] = Field(default_factory=list, description="Multiple-choice options, in order (A, B, ...).")
    books: list[str] = Field(default_factory=list, description="Only these book ids.")
    organ_systems: list[str] = Field(default_factory=list, description="Only these organ systems.")
    top_k: int | None = Field(None, ge=1, le=50, description="Pages kept per sub-query search.")
    max_turns: int | None = Field(None, ge=1, le=10, description="Search rounds (1 = no reflection).")
    thread_id: str | None = Field(None, min_length=1, max_length=200, description="Conversation thread id.")
    stream: bool = Field(False, description="Server-sent events of the agent's progress, then the result.")


class FigureOut(FigureRecord):
    """A figure of a cited page as HTTP gives it: its crop's URL instead of its storage key."""

    image_key: str = Field("", exclude=True)
    image_url: str = Field(description="Where the figure's crop is served (GET, same API key or the page's link).")
    link: str = Field("", description="The crop's signed absolute URL (the page's link's signature).")


class CitationOut(Citation):
    """The agent's citation as HTTP gives it: the page image's URL instead of its storage key."""

    image_key: str = Field("", exclude=True)
    words_key: str = Field("", exclude=True)
    figures: list[FigureOut] = Field(default_factory=list, description="The cited page's figures, top to bottom.")
    image_url: str = Field(description="Where the page image is served (GET, same API key).")
    link: str = Field(
        "", description="The page image's signed absolute URL: opens without an API key until it expires "
        "(PATHORAG_PAGE_LINK_TTL_S)."
    )


class UsageOut(TokenUsage):
    total_tokens: int = 0


class AskResponse(AgentResult):
    """The agent's result as HTTP gives it: citations with their image URLs, usage with its total."""

    citations: list[CitationOut] = Field(default_factory=list)
    usage: UsageOut = Field(default_factory=UsageOut)


# --- books and jobs -------------------------------------------------------------------------------


class BookOut(BookRecord):
    """A book as the API lists it: the catalog's record (its status always given)."""

    status: BookStatus


class BookList(BaseModel):
    books: list[BookOut]


JobStatus = Literal["queued", "running", "done", "failed"]


class JobOut(BaseModel):
    job_id: str
    status: JobStatus
    file_name: str
    book_id: str = ""
    pages_done: int = 0
    pages_total: int = 0
    progress: float = Field(0.0, description="Fraction of pages done, 0..1.")
    result: str = Field("", description="'indexed' or 'already indexed' when done.")
    error: str = ""
    created_at: str = ""
    updated_at: str = ""


class DeletedBook(BaseModel):
    book_id: str
    deleted: bool = True


# --- health ---------------------------------------------------------------------------------------


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


# --- OpenAI-compatible chat -----------------------------------------------------------------------


class ImageUrl(BaseModel):
    url: str
    detail: str | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None
    image_url: ImageUrl | str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, tools, user, ...: accepted and ignored

    model: str = ""
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[Any] | None = Field(None, description="Accepted and ignored: the agent uses its own tools.")


class UrlCitation(BaseModel):
    url: str
    title: str


class Annotation(BaseModel):
    """OpenAI's `url_citation` annotation: chat clients that read it (Open WebUI) list the sources natively."""

    type: Literal["url_citation"] = "url_citation"
    url_citation: UrlCitation


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    annotations: list[Annotation] = Field(default_factory=list, description="Each cited page's signed link.")


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str = "stop"


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageOut
    citations: list[CitationOut] = Field(
        default_factory=list, description="Structured citations (an extra field standard clients ignore)."
    )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "pathorag"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# --- server-sent events ---------------------------------------------------------------------------


def _absent(value: object) -> bool:
    return value is None


class ChatDelta(BaseModel):
    """What one chunk adds to the assistant message; fields left None are not sent."""

    role: Literal["assistant"] | None = Field(None, exclude_if=_absent)
    content: str | None = Field(None, exclude_if=_absent)
    reasoning_content: str | None = Field(None, exclude_if=_absent)
    annotations: list[Annotation] | None = Field(None, exclude_if=_absent)  # on the finishing chunk, when any


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    finish_reason: str | None = None  # sent as null until the last chunk


class ChatCompletionChunk(BaseModel):
    """One `data:` event of a streamed chat completion (OpenAI's chat.completion.chunk)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    citations: list[CitationOut] | None = Field(None, exclude_if=_absent)  # on the finishing chunk, when any
    usage: UsageOut | None = Field(None, exclude_if=_absent)  # on the usage chunk (stream_options.include_usage)


def event_json(model: BaseModel) -> str:
    """A hand-built event payload as the streams have always written it (json.dumps spacing, ASCII escapes)."""
    return json.dumps(model.model_dump(mode="json"))
