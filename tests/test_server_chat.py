"""The chat endpoint's text pieces: progress lines and the streamed answer adding up to the plain one."""

from __future__ import annotations

from agent.state import AgentResult, Citation, InspectEvent, ReflectEvent, RouteEvent, SearchEvent, SearchHit
from agent.trace import describe_event, ref_ranges
from server.chat import StreamedAnswer, answer_text
from server.protocol import CitationOut


def _result(answer: str) -> tuple[AgentResult, list[CitationOut]]:
    citation = Citation(ref="P1", book_id="b" * 24, title="Essentials", page=2, page_label="102")
    result = AgentResult(answer=answer, choice="A", rationale="It says so [P1].", confidence=0.9, evidence_only=False,
                         citations=[citation])
    return result, [CitationOut(**citation.model_dump(exclude={"image_key"}), image_url="/v1/pages/x/2")]


def test_streamed_tokens_then_the_rest_equal_the_plain_answer():
    result, citations = _result("Reed-Sternberg cells,\n\nwith owl-eye nucleoli [P1].")
    full = answer_text(result, citations)
    for tokens in (
        ["  Reed", "-Sternberg cells,", "\n\n", "with owl-eye", " nucleoli [P1].", "  \n"],
        ["\n", "Reed-Sternberg cells,\n", "\nwith owl-eye nucleoli [P1]. "],
        [],
    ):
        streamed = StreamedAnswer()
        sent = "".join(streamed.token(token) for token in tokens)
        assert sent + streamed.rest(full) == full, tokens


def test_a_streamed_answer_that_was_replaced_is_followed_by_the_whole_answer():
    result, citations = _result("Evidence only: the pages below.")
    streamed = StreamedAnswer()
    sent = streamed.token("The model began to")
    full = answer_text(result, citations)
    assert sent + streamed.rest(full) == "The model began to\n\n" + full


def test_trace_event_lines():
    hit = SearchHit(ref="P1", book_id="b", title="t", page=1, page_label="1", score=1.0)
    assert describe_event(RouteEvent(by="model", retrieval=True, organ_systems=["liver"], queries=["a", "b"])) == (
        "Planning (model): 2 searches in liver."
    )
    assert describe_event(RouteEvent(by="rules", retrieval=False)) == "Answering without searching the textbooks."
    assert describe_event(SearchEvent(turn=1, query="cirrhosis", hits=[hit])) == "Searching: cirrhosis → 1 page"
    assert "failed (boom)" in describe_event(SearchEvent(turn=1, query="x", error="boom"))
    inspect = InspectEvent(turn=1, pages=["P1", "P2", "P3", "P4", "P7"], zoomed=["P2"], sufficient=True)
    assert describe_event(inspect) == "Reading pages P1-P4, P7, zoomed into P2; the evidence suffices."
    assert describe_event(ReflectEvent(turn=1, next_queries=["CD30"])) == "Searching again: 1 new query."
    assert describe_event(ReflectEvent(turn=1, stop_reason="the evidence suffices")) == "Done searching: the evidence suffices."
    assert ref_ranges(["P3", "P1", "P2", "X"]) == "P3, P1-P2, X"
