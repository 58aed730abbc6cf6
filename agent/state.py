"""What the agent reads and writes: the graph state (plain, checkpointable dicts), trace events, the result.

The graph state holds only JSON-like values so that any checkpointer can store it; the public
types (`AgentResult`, the events) are pydantic models built from it. Nodes return what they add
(new trace events, warnings, tokens used, pages) and the state's reducers fold it in; each run starts
by overwriting the per-question fields (`fresh_state`), past the reducers.
"""

from __future__ import annotations

import operator
from typing import Annotated, Literal, TypedDict

from langgraph.types import Overwrite
from pydantic import BaseModel, Field

from rag.models import CitedPage

# --- graph state --------------------------------------------------------------------------------


class Query(TypedDict):
    text: str
    option: str | None  # the MCQ letter this query probes, if any
    use_image: bool


class Page(TypedDict):
    """A retrieved page (rag's `CitedPage` fields and the run's own). `ref` (P1, P2, ...) is how the
    models cite it within one run. A plain dict: the checkpointer stores the state as JSON."""

    ref: str
    book_id: str
    title: str
    page: int
    page_label: str
    section: str
    score: float
    text_similarity: float  # the best cosine of its text chunks to a query (text channel), 0 when unmatched
    snippet: str
    image_key: str
    words_key: str
    figures: list[dict]  # rag's FigureRecord fields
    matched_figure: int  # the figure (1-based) whose crop matched the question's image best; 0: none
    text: str
    found_by: list[str]  # the texts of the queries that found it
    inspected: bool  # shown to the model by an inspect step
    relevant: bool  # an inspect step judged it to bear on the question


class Turn(TypedDict):
    question: str
    answer: str


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int


def add_usage(total: Usage, used: Usage) -> Usage:
    return {name: total[name] + used[name] for name in ("prompt_tokens", "completion_tokens")}


def add_pages(pages: dict[str, Page], changed: dict[str, Page]) -> dict[str, Page]:
    """New pages added, changed ones (by ref) replaced."""
    return pages | changed


def add_evidence(evidence: str, summary: str) -> str:
    return f"{evidence}\n{summary}".strip()


def no_usage() -> Usage:
    return {"prompt_tokens": 0, "completion_tokens": 0}


class AgentState(TypedDict, total=False):
    # per question (reset by every run)
    question: str
    choices: list[str]
    retrieval: bool
    organ_systems: list[str]
    queries: list[Query]  # the queries of the round to run next
    done_queries: Annotated[list[str], operator.add]
    pages: Annotated[dict[str, Page], add_pages]  # ref -> page
    evidence: Annotated[str, add_evidence]  # the inspect steps' summaries, citing refs
    sufficient: bool
    proposed: list[str]  # follow-up queries the last inspect step asked for
    turn: int  # search rounds done
    model_ok: bool  # a model is configured and has not failed to answer in this run
    stop_reason: str  # why searching stopped; empty while it goes on
    usage: Annotated[Usage, add_usage]
    trace: Annotated[list[dict], operator.add]
    warnings: Annotated[list[str], operator.add]
    result: dict  # the answer node's AgentResult fields, without the trace, warnings and usage
    # per thread (kept across runs by the checkpointer)
    history: Annotated[list[Turn], operator.add]


def fresh_state(question: str, choices: list[str], model_ok: bool) -> AgentState:
    """A run's input: every per-question field reset (overwritten, not reduced); `history` is left to
    the thread's checkpoint."""
    return AgentState(
        question=question,
        choices=choices,
        retrieval=True,
        organ_systems=[],
        queries=[],
        done_queries=Overwrite([]),
        pages=Overwrite({}),
        evidence=Overwrite(""),
        sufficient=False,
        proposed=[],
        turn=0,
        model_ok=model_ok,
        stop_reason="",
        usage=Overwrite(no_usage()),
        trace=Overwrite([]),
        warnings=Overwrite([]),
        result={},
    )


# --- trace events --------------------------------------------------------------------------------


class RouteEvent(BaseModel):
    type: Literal["route"] = "route"
    by: Literal["model", "rules"]
    retrieval: bool
    organ_systems: list[str] = Field(default_factory=list)
    queries: list[str] = Field(default_factory=list)
    reason: str = ""


class SearchHit(BaseModel):
    ref: str
    book_id: str
    title: str
    page: int
    page_label: str
    score: float


class SearchEvent(BaseModel):
    type: Literal["search"] = "search"
    turn: int
    query: str
    option: str | None = None
    used_image: bool = False
    hits: list[SearchHit] = Field(default_factory=list)
    error: str = ""
    seconds: float = Field(0.0, description="How long the search took.")


class InspectEvent(BaseModel):
    type: Literal["inspect"] = "inspect"
    turn: int
    pages: list[str] = Field(default_factory=list, description="Refs of the pages the model looked at.")
    zoomed: list[str] = Field(default_factory=list, description="Refs of pages it also saw cropped.")
    summary: str = ""
    sufficient: bool = False


class ReflectEvent(BaseModel):
    type: Literal["reflect"] = "reflect"
    turn: int
    next_queries: list[str] = Field(default_factory=list)
    stop_reason: str = ""


class CitationRemovedEvent(BaseModel):
    type: Literal["citation_removed"] = "citation_removed"
    citation: str
    reason: str


class AnswerTokenEvent(BaseModel):
    """A piece of the model's answer text as it is generated (streaming only; not kept in the trace)."""

    type: Literal["answer_token"] = "answer_token"
    text: str


class AnswerEvent(BaseModel):
    type: Literal["answer"] = "answer"
    by: Literal["model", "evidence"]
    choice: str | None = None


TraceEvent = Annotated[
    RouteEvent | SearchEvent | InspectEvent | ReflectEvent | CitationRemovedEvent | AnswerEvent,
    Field(discriminator="type"),
]

# --- result -------------------------------------------------------------------------------------


class Citation(CitedPage):
    """A page an answer cites: rag's cited page, with the ref the answer names it by and the passage
    it relies on."""

    ref: str = Field("", description="How the trace and rationale name this page (P1, P2, ...).")
    passage: str = Field(
        "", description="The page's words the answer relies on: the model's quote as the page gives it, "
        "or (evidence only, or a quote not found on the page) the passage that best matches the question."
    )
    boxes: list[tuple[float, float, float, float]] = Field(
        default_factory=list, description="Where the passage lies on the page image: one [left, top, right, "
        "bottom] box per line, as fractions of the image's width and height; empty when it cannot be located."
    )


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class AgentResult(BaseModel):
    answer: str
    choice: str | None = Field(None, description="The chosen option letter (MCQ).")
    rationale: str = ""
    confidence: float | None = Field(None, description="The model's own confidence in 0..1; None in evidence-only mode.")
    evidence_only: bool = Field(description="True: no language model generated this answer (retrieval only).")
    insufficient_evidence: bool = False
    option_support: dict[str, float] = Field(
        default_factory=dict, description="MCQ letter -> retrieval support in 0..1 (sums to 1)."
    )
    citations: list[Citation] = Field(default_factory=list)
    trace: list[TraceEvent] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    latency_ms: int = 0
    thread_id: str | None = None


class ResultEvent(BaseModel):
    """The last event of `stream`."""

    type: Literal["result"] = "result"
    result: AgentResult


StreamEvent = Annotated[
    RouteEvent
    | SearchEvent
    | InspectEvent
    | ReflectEvent
    | CitationRemovedEvent
    | AnswerTokenEvent
    | AnswerEvent
    | ResultEvent,
    Field(discriminator="type"),
]
