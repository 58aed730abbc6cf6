"""The agent's steps: route, retrieve, inspect, reflect, answer. Each reads the state and returns an update.

Model faults never escape a node: an unreachable or timed-out model ends model use for the run
(the answer falls back to evidence only); an unusable reply or a refusal costs that step alone.
Every step appends typed events to the trace and sends them to `stream` as it goes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime
from PIL import Image
import pydantic_core
from pydantic import BaseModel

from agent import prompts
from agent.evidence import OptionPick, pick_option, score_options
from agent.images import data_url
from agent.prompts import LETTERS, Answer, Inspection, RoutePlan
from agent.settings import AgentSettings
from agent.state import (
    AgentResult,
    AgentState,
    AnswerEvent,
    AnswerTokenEvent,
    Citation,
    CitationRemovedEvent,
    InspectEvent,
    Page,
    Query,
    ReflectEvent,
    RouteEvent,
    SearchEvent,
    SearchHit,
    add_evidence,
    add_usage,
    no_usage,
)
from agent.vlm import ChatModel, Parsed, VLMError, VLMRefusal, VLMTimeout, VLMUnavailable
from rag.coverage import vocabulary_coverage
from rag.models import CitedPage, PageHit
from rag.page_images import crop_fraction
from rag.page_index import PageIndex
from rag.page_words import find_passage
from rag.search import SearchQuery, SearchResult, search_many, snippet_text

log = logging.getLogger(__name__)
MAX_QUERIES_PER_ROUND = 12
FIGURES_PER_PAGE = 3  # figure crops shown with a page to a question with an image (of a plate of many: the
# one that matched the image, then the first)
EVIDENCE_ONLY = "Evidence only: no language model generated this answer."


@dataclass
class RunContext:
    """What one run needs besides its state; never checkpointed (it holds the user's images)."""

    settings: AgentSettings
    index: PageIndex
    router: ChatModel | None
    answerer: ChatModel | None
    images: list[Image.Image] = field(default_factory=list)
    books: list[str] = field(default_factory=list)
    organ_systems: list[str] = field(default_factory=list)  # the user's filter; the router may not widen it
    deadline: float = float("inf")  # time.monotonic() value

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


Step = Runtime[RunContext]


# --- route --------------------------------------------------------------------------------------


def route(state: AgentState, runtime: Step) -> dict:
    """Decide whether to search, where (organ systems) and for what (sub-queries, one per MCQ option)."""
    ctx = runtime.context
    question, choices = state["question"], state["choices"]
    update: dict = {"warnings": [], "usage": no_usage()}
    plan, by = None, "rules"
    if ctx.router is not None and state["model_ok"]:
        known = _known_organ_systems(ctx.index)
        messages = prompts.route_messages(question, choices, state.get("history", []), known, len(ctx.images))
        try:
            reply = ctx.router.chat(messages, RoutePlan, ctx.deadline)
            plan, by = reply.value, "model"
            _add_usage(update, reply)
            plan.organ_systems = [name for name in plan.organ_systems if name in known]
        except VLMError as error:
            update["warnings"].append(f"router: {error}; planned the search by rules instead")
            if isinstance(error, VLMUnavailable) and ctx.router.endpoint == _endpoint(ctx.answerer):
                update["model_ok"] = False
    if plan is None:
        plan = rule_plan(question, choices, bool(ctx.images))
    queries = _complete_queries(plan, question, choices, bool(ctx.images))
    retrieval = plan.retrieval or not _can_answer(state, update, ctx)
    organ_systems = ctx.organ_systems or plan.organ_systems
    event = RouteEvent(
        by=by, retrieval=retrieval, organ_systems=organ_systems, queries=[q["text"] for q in queries], reason=plan.reason
    )
    return update | {
        "retrieval": retrieval,
        "organ_systems": organ_systems,
        "queries": queries if retrieval else [],
        "trace": _emit(event),
    }


def rule_plan(question: str, choices: list[str], has_image: bool) -> RoutePlan:
    """Without a router: always search, with the question itself and question + each option."""
    queries = [prompts.PlannedQuery(text=question, use_image=has_image)]
    queries += [
        prompts.PlannedQuery(text=f"{question} {choice}", option=LETTERS[i]) for i, choice in enumerate(choices)
    ]
    return RoutePlan(retrieval=True, queries=queries, reason="rule-based: the question, and the question with each option")


def _complete_queries(plan: RoutePlan, question: str, choices: list[str], has_image: bool) -> list[Query]:
    """The plan's queries, deduplicated, with one per MCQ option guaranteed and image use only when possible."""
    letters = set(LETTERS[: len(choices)])
    queries: list[Query] = []
    seen: set[str] = set()

    def add(text: str, option: str | None, use_image: bool) -> None:
        key = " ".join(text.lower().split())
        if key and key not in seen and len(queries) < MAX_QUERIES_PER_ROUND + len(choices):
            seen.add(key)
            queries.append(Query(text=text.strip(), option=option, use_image=use_image and has_image))

    for query in plan.queries:
        option = (query.option or "").strip().upper() or None
        add(query.text, option if option in letters else None, query.use_image)
    covered = {query["option"] for query in queries}
    for i, choice in enumerate(choices):
        if LETTERS[i] not in covered:
            add(f"{question} {choice}", LETTERS[i], False)
    if not queries:
        add(question, None, has_image)
    return queries


def _can_answer(state: AgentState, update: dict, ctx: RunContext) -> bool:
    """Skipping retrieval needs a model to answer."""
    return ctx.answerer is not None and update.get("model_ok", state["model_ok"])


def _known_organ_systems(index: PageIndex) -> list[str]:
    return sorted({name for book in index.complete_books() for name in book.organ_systems})


def _endpoint(model: ChatModel | None):
    return model.endpoint if model else None


# --- retrieve -----------------------------------------------------------------------------------


def retrieve(state: AgentState, runtime: Step) -> dict:
    """Run this round's queries concurrently; merge their pages (one entry per page, best score kept)."""
    ctx = runtime.context
    turn = state["turn"] + 1
    warnings = []
    queries = state["queries"]
    visual = ctx.index.encoders.page is not None  # also loads the encoders once, before the threads start
    if not visual and any(query["use_image"] for query in queries) and ctx.images:
        warnings.append("the index has no page-image channel, so the image was not used to search")
    searches = [_search_query(ctx, state["organ_systems"], query, visual) for query in queries]
    outcomes = _search_round(ctx, searches)

    pages = {ref: dict(page) for ref, page in state["pages"].items()}
    by_location = {(page["book_id"], page["page"]): ref for ref, page in pages.items()}
    events = []
    for query, search, outcome in zip(queries, searches, outcomes):
        hits, error = outcome.hits, outcome.error
        if error:
            warnings.append(f"search {query['text'][:60]!r} failed: {error}")
        refs = [_merge(pages, by_location, hit, query["text"]) for hit in hits]
        events.append(
            SearchEvent(
                turn=turn,
                query=query["text"],
                option=query["option"],
                used_image=search.image is not None,
                hits=[
                    SearchHit(ref=ref, book_id=h.book_id, title=h.title, page=h.page, page_label=h.page_label, score=h.score)
                    for ref, h in zip(refs, hits)
                ],
                error=error,
                seconds=round(outcome.seconds, 4),
            )
        )
    return {
        "turn": turn,
        "pages": pages,
        "done_queries": [query["text"] for query in queries],
        "queries": [],
        "warnings": warnings,
        "trace": _emit(*events),
    }


def _search_query(ctx: RunContext, organ_systems: list[str], query: Query, visual: bool) -> SearchQuery:
    image = ctx.images[0] if query["use_image"] and visual and ctx.images else None
    return SearchQuery(
        text=query["text"],
        image=image,
        books=ctx.books,
        organ_systems=organ_systems,
        top_k=ctx.settings.agent_pages_per_query,
    )


def _search_round(ctx: RunContext, searches: list[SearchQuery]) -> list[SearchResult]:
    """The round's searches at once; a search that found nothing within the router's organ-system
    guess is run again over every organ system the user allowed."""
    workers = ctx.settings.agent_search_concurrency
    results = search_many(ctx.index, searches, workers)
    again = [n for n, (search, result) in enumerate(zip(searches, results))
             if not result.hits and not result.error and search.organ_systems and search.organ_systems != ctx.organ_systems]  # fmt: skip
    for n in again:
        searches[n].organ_systems = list(ctx.organ_systems)
    for n, retried in zip(again, search_many(ctx.index, [searches[n] for n in again], workers) if again else []):
        retried.seconds += results[n].seconds
        results[n] = retried
    return results


def _merge(pages: dict[str, Page], by_location: dict, hit: PageHit, query_text: str) -> str:
    location = (hit.book_id, hit.page)
    ref = by_location.get(location)
    if ref is None:
        ref = f"P{len(pages) + 1}"
        by_location[location] = ref
        pages[ref] = Page(
            **hit.model_dump(include=set(CitedPage.model_fields)),
            ref=ref,
            text_similarity=hit.channel_scores.get("text", 0.0),
            text=hit.text,
            found_by=[query_text],
            inspected=False,
            relevant=False,
        )
        return ref
    page = pages[ref]
    page["found_by"] = [*page["found_by"], query_text]
    page["matched_figure"] = page.get("matched_figure") or hit.matched_figure
    page["text_similarity"] = max(page["text_similarity"], hit.channel_scores.get("text", 0.0))
    if hit.score > page["score"]:
        page["score"], page["snippet"] = hit.score, hit.snippet
    return ref


# --- inspect ------------------------------------------------------------------------------------


def inspect(state: AgentState, runtime: Step) -> dict:
    """Show the model the best pages it has not seen; it summarises the evidence and judges sufficiency."""
    ctx = runtime.context
    update: dict = {"warnings": [], "usage": no_usage(), "proposed": []}
    pages = {ref: dict(page) for ref, page in state["pages"].items()}
    fresh = sorted((p for p in pages.values() if not p["inspected"]), key=lambda p: -p["score"])
    shown = fresh[: ctx.settings.agent_pages_per_call]
    if not shown:
        return update | {"sufficient": False, "trace": _emit(InspectEvent(turn=state["turn"], summary="no new pages"))}
    pixels = ctx.settings.agent_image_pixels
    with_images = [(page, _page_url(ctx, page, pixels)) for page in shown]
    # A question with an image is compared with the pages' figures too, each seen whole (the zoom a
    # model would otherwise have to ask for).
    figures = _figure_crops(ctx, shown, pixels) if ctx.images else []
    messages = prompts.inspect_messages(state["question"], state["choices"], with_images, state["evidence"], figures=figures)
    zoomed: list[str] = []
    try:
        reply = ctx.answerer.chat(messages, Inspection, ctx.deadline)
        _add_usage(update, reply)
        inspection = reply.value
        crops = _zoom_crops(ctx, inspection, {page["ref"]: page for page in shown}, pixels)
        if crops:
            zoom_messages = prompts.inspect_messages(
                state["question"], state["choices"], [], add_evidence(state["evidence"], inspection.summary), crops
            )
            reply = ctx.answerer.chat(zoom_messages, Inspection, ctx.deadline)
            _add_usage(update, reply)
            inspection = reply.value.model_copy(update={"relevant": inspection.relevant + reply.value.relevant})
            zoomed = [page["ref"] for page, _ in crops]
    except VLMError as error:
        update["warnings"].append(f"inspect: {error}")
        if isinstance(error, VLMUnavailable):
            update["model_ok"] = False
        return update | {"sufficient": False, "stop_reason": "the model could not inspect the pages"}
    for page in shown:
        page["inspected"] = True
        page["relevant"] = page["relevant"] or page["ref"] in inspection.relevant
    event = InspectEvent(
        turn=state["turn"],
        pages=[page["ref"] for page in shown],
        zoomed=zoomed,
        summary=inspection.summary,
        sufficient=inspection.sufficient,
    )
    return update | {
        "pages": pages,
        "evidence": inspection.summary,
        "sufficient": inspection.sufficient,
        "proposed": inspection.next_queries,
        "trace": _emit(event),
    }


def _page_url(ctx: RunContext, page: Page, pixels: int) -> str | None:
    """The page image as a data URL, or None (text only) when the image store lacks it."""
    try:
        return data_url(ctx.index.images.open(page["image_key"]), pixels)
    except (KeyError, ValueError, OSError):
        return None


def _figure_crops(ctx: RunContext, pages: list[Page], pixels: int) -> list[tuple[Page, dict, str]]:
    """(page, figure, data URL) of up to FIGURES_PER_PAGE figures of each page whose crop is stored: the
    one that matched the question's image first, then the page's figures in order."""
    crops = []
    for page in pages:
        figures = list(page["figures"])
        if matched := page.get("matched_figure"):
            figures.insert(0, figures.pop(matched - 1))
        for figure in figures[:FIGURES_PER_PAGE]:
            try:
                crops.append((page, figure, data_url(ctx.index.images.open(figure["image_key"]), pixels)))
            except (KeyError, ValueError, OSError):
                continue
    return crops


def _zoom_crops(ctx: RunContext, inspection: Inspection, shown: dict[str, Page], pixels: int) -> list[tuple[Page, str]]:
    crops = []
    for zoom in inspection.zoom:
        page = shown.get(zoom.ref.strip("[] "))
        if page is None:
            continue
        try:
            crop = crop_fraction(ctx.index.images.open(page["image_key"]), zoom.box)
        except (KeyError, ValueError, OSError):
            continue
        crops.append((page, data_url(crop, pixels)))
    return crops


# --- reflect ------------------------------------------------------------------------------------


def reflect(state: AgentState, runtime: Step) -> dict:
    """Search again with the model's follow-up queries, unless the evidence suffices or a budget is spent."""
    ctx = runtime.context
    settings = ctx.settings
    done = {" ".join(text.lower().split()) for text in state["done_queries"]}
    fresh = list(dict.fromkeys(q.strip() for q in state["proposed"] if q.strip() and " ".join(q.lower().split()) not in done))
    used = state["usage"]["prompt_tokens"] + state["usage"]["completion_tokens"]
    if state["stop_reason"]:
        reason = state["stop_reason"]
    elif state["sufficient"]:
        reason = "the evidence suffices"
    elif state["turn"] >= settings.agent_max_turns:
        reason = f"the search-round budget ({settings.agent_max_turns}) is spent"
    elif used >= settings.agent_max_tokens:
        reason = f"the token budget ({settings.agent_max_tokens}) is spent"
    elif ctx.time_left() <= 0:
        reason = f"the time budget ({settings.agent_max_seconds:g} s) is spent"
    elif not fresh:
        reason = "no new queries to try"
    else:
        reason = ""
    queries = [] if reason else [Query(text=text, option=None, use_image=False) for text in fresh[:MAX_QUERIES_PER_ROUND]]
    event = ReflectEvent(turn=state["turn"], next_queries=[q["text"] for q in queries], stop_reason=reason)
    return {"queries": queries, "stop_reason": reason, "trace": _emit(event)}


# --- answer -------------------------------------------------------------------------------------


def answer(state: AgentState, runtime: Step) -> dict:
    """The model's answer with checked citations; evidence only when no model is usable."""
    ctx = runtime.context
    update: dict = {"warnings": [], "usage": no_usage()}
    result = None
    if ctx.answerer is not None and state["model_ok"]:
        try:
            result, events = _model_answer(state, ctx, update)
        except VLMError as error:
            kind = "declined" if isinstance(error, VLMRefusal) else "failed"
            update["warnings"].append(f"answer: the model {kind} ({error}); showing the evidence instead")
    elif ctx.answerer is None:
        log.debug("no VLM configured: evidence-only answer")
    else:
        update["warnings"].append("the model was unavailable, so this answer shows the evidence only")
    if result is None:
        result, events = _evidence_answer(state, ctx)
    turn = {"question": state["question"], "answer": result.answer}
    return update | {
        "trace": _emit(*events),
        "result": result.model_dump(mode="json", exclude={"trace", "warnings", "usage"}),
        "history": [turn],
    }


def _model_answer(state: AgentState, ctx: RunContext, update: dict) -> tuple[AgentResult, list[BaseModel]]:
    settings = ctx.settings
    pages = state["pages"]
    ranked = sorted(pages.values(), key=lambda p: (not p["relevant"], -p["score"]))[: settings.agent_pages_per_call]
    pixels = settings.agent_image_pixels
    messages = prompts.answer_messages(
        state["question"],
        state["choices"],
        [data_url(image, pixels) for image in ctx.images],
        [(page, _page_url(ctx, page, pixels)) for page in ranked],
        state["evidence"],
        state.get("history", []),
        searched=state["retrieval"],
    )
    reply = ctx.answerer.chat(messages, Answer, ctx.deadline, on_text=_answer_streamer(ctx))
    _add_usage(update, reply)
    given = reply.value
    events: list[BaseModel] = []
    citations = []
    quotes: dict[str, str] = {}  # ref -> the model's first quote from it
    for cited in given.citations:
        quotes.setdefault(cited.ref.strip("[] ").upper(), cited.quote)
    for ref, quote in quotes.items():
        if ref not in pages:
            events.append(CitationRemovedEvent(citation=ref, reason="not a page retrieved in this run"))
            update["warnings"].append(f"removed citation {ref!r}: not a page retrieved in this run")
            continue
        passage = find_passage(pages[ref]["text"], quote) if quote else ""
        if quote and not passage:
            update["warnings"].append(f"the quote given for {ref} is not on that page; its best-matching passage is shown instead")
        citations.append(_citation(ctx, pages[ref], passage))
    choice = _valid_choice(given.choice, state["choices"], update)
    insufficient = given.insufficient_evidence
    if insufficient:
        choice = None
    elif state["retrieval"] and not citations:
        update["warnings"].append("the answer cites no retrieved page")
    events.append(AnswerEvent(by="model", choice=choice))
    result = AgentResult(
        answer=given.answer,
        choice=choice,
        rationale=given.rationale,
        confidence=given.confidence,
        evidence_only=False,
        insufficient_evidence=insufficient,
        citations=citations,
    )
    return result, events


def _answer_streamer(ctx: RunContext):
    """A callback for the model's growing JSON reply that streams its `answer` text as AnswerTokenEvents
    and cuts the reply short once the run is stopped or out of time."""
    writer = get_stream_writer()
    sent = 0

    def on_text(so_far: str) -> None:
        nonlocal sent
        if ctx.time_left() <= 0:
            raise VLMTimeout("the run was stopped or ran out of time while the answer was being written")
        try:
            partial = pydantic_core.from_json(so_far, allow_partial="trailing-strings")
        except ValueError:
            return  # not (yet) a JSON object: a server ignoring the schema; the parsed reply still counts
        answer = partial.get("answer") if isinstance(partial, dict) else None
        if isinstance(answer, str) and len(answer) > sent:
            writer(AnswerTokenEvent(text=answer[sent:]))
            sent = len(answer)

    return on_text


def _valid_choice(choice: str | None, choices: list[str], update: dict) -> str | None:
    if not choices or not choice:
        return None
    letter = choice.strip().strip(".)").upper()[:1]
    if letter in LETTERS[: len(choices)]:
        return letter
    update["warnings"].append(f"the model chose {choice!r}, which is not an option letter; ignored")
    return None


def _evidence_answer(state: AgentState, ctx: RunContext) -> tuple[AgentResult, list[BaseModel]]:
    ranked = sorted(state["pages"].values(), key=lambda p: -p["score"])
    citations = [_citation(ctx, page) for page in ranked[: ctx.settings.agent_pages_per_query]]
    choices = state["choices"]
    support: dict[str, float] = {}
    choice = None
    weak = _weak_evidence(ctx, ranked, state["question"], choices) if ranked else ""
    if not ranked:
        text = f"{EVIDENCE_ONLY} No indexed textbook page matched the question, so there is no evidence to show."
    elif weak:
        text = f"{EVIDENCE_ONLY} {weak}, so the library may not cover it and no answer is suggested; the closest pages are cited below."
    else:
        text = f"{EVIDENCE_ONLY} The most relevant textbook pages are cited below, best first."
    if ranked and choices:
        letters = LETTERS[: len(choices)]
        scores = score_options(state["question"], choices, [page["text"] for page in ranked])
        support = dict(zip(letters, scores))
        if not weak:
            pick = pick_option(state["question"], scores)
            choice = letters[pick.index]
            text = f"{EVIDENCE_ONLY} " + _pick_text(pick, letters, choices, scores)
    result = AgentResult(
        answer=text,
        choice=choice,
        rationale="Pages ranked by fused retrieval score. Option support: where the retrieved pages state each "
        "option's distinctive words close to the question's words (lexical, no model)."
        if choices
        else "Pages ranked by fused retrieval score.",
        evidence_only=True,
        insufficient_evidence=not ranked or bool(weak),
        option_support=support,
        citations=citations,
    )
    return result, [AnswerEvent(by="evidence", choice=choice)]


def _pick_text(pick: OptionPick, letters: str, choices: list[str], scores: list[float]) -> str:
    chosen = f"option {letters[pick.index]} ({choices[pick.index]})"
    if pick.exception:
        text = f"The question asks for the exception: retrieval supports {chosen} least, with {scores[pick.index]:.0%} of the support"
    else:
        text = f"Retrieval supports {chosen} most, with {scores[pick.index]:.0%} of the support"
    if pick.rivals:
        rivals = ", ".join(f"{letters[i]} ({scores[i]:.0%})" for i in pick.rivals)
        return f"{text}, but {rivals} {'is' if len(pick.rivals) == 1 else 'are'} about as close: low confidence, the pages do not settle it; read them."
    return f"{text}; read the cited pages before relying on it."


def _weak_evidence(ctx: RunContext, pages: list[Page], question: str, choices: list[str]) -> str:
    """Why the retrieved pages are unlikely to answer the question, or "" when nothing says so.

    Two absolute measures, unlike fused scores (relative to the other results, so dependent on the
    library's size): no page's text is as similar to a query as `agent_min_text_similarity` asks, or
    fewer of the words of the question and its options than `agent_min_vocabulary_coverage` occur on
    any indexed page."""
    settings = ctx.settings
    if settings.agent_min_text_similarity > 0 and max(p["text_similarity"] for p in pages) < settings.agent_min_text_similarity:
        return "No indexed textbook page matches the question closely"
    if settings.agent_min_vocabulary_coverage > 0:
        coverage = vocabulary_coverage(ctx.index, " ".join([question, *choices]))
        if coverage.share < settings.agent_min_vocabulary_coverage:
            asked = "the question and its options" if choices else "the question"
            return (
                f"{len(coverage.unknown)} of the {coverage.words} words of {asked} appear on no indexed page "
                f"({', '.join(coverage.unknown[:8])})"
            )
    return ""


def _citation(ctx: RunContext, page: Page, passage: str = "") -> Citation:
    """The page as cited, with the passage relied on (the best-matching one unless given) and where it
    lies on the page image."""
    passage = passage or snippet_text(page["snippet"])
    return Citation(
        # a page kept in a thread from before a field existed takes its default
        **{name: page[name] for name in CitedPage.model_fields if name in page},
        ref=page["ref"],
        passage=passage,
        boxes=ctx.index.passage_boxes(page["words_key"], passage),
    )


# --- shared -------------------------------------------------------------------------------------


def _emit(*events: BaseModel) -> list[dict]:
    """Send events to `stream` now and return them for the trace."""
    writer = get_stream_writer()
    for event in events:
        writer(event)
    return [event.model_dump(mode="json") for event in events]


def _add_usage(update: dict, reply: Parsed) -> None:
    update["usage"] = add_usage(update["usage"], {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens})
