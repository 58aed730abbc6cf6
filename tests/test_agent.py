"""The agent's control flow against a scripted OpenAI-compatible server on loopback (the real `openai` client),
over a small real index: routing, reflection rounds, citation checks, abstention, budgets and model faults.
"""

from __future__ import annotations

import base64
import io
import socket
import time

import pytest
from pydantic import SecretStr
from PIL import Image

from agent import Agent, AgentResult, ResultEvent
from agent.state import InspectEvent, ReflectEvent, RouteEvent, SearchEvent
from tests.agent_support import HODGKIN_PAGE_LABEL, MCQ_CHOICES, MCQ_QUESTION, agent_library  # noqa: F401
from tests.scripted_vlm import Refusal, ScriptedVLM, Slow, Status

pytestmark = pytest.mark.slow  # builds a real index once per session


def plan(*queries: str, retrieval: bool = True, organ_systems: tuple = (), options: tuple = ()) -> dict:
    letters = list(options) + [None] * (len(queries) - len(options))
    return {
        "retrieval": retrieval,
        "organ_systems": list(organ_systems),
        "queries": [{"text": q, "option": o, "use_image": False} for q, o in zip(queries, letters)],
        "reason": "scripted",
    }


def inspection(sufficient: bool = True, relevant=("P1",), next_queries=(), zoom=(), summary="[P1] describes it.") -> dict:
    return {
        "summary": summary,
        "relevant": list(relevant),
        "sufficient": sufficient,
        "zoom": list(zoom),
        "next_queries": list(next_queries),
    }


def answer(text="Reed-Sternberg cells.", choice=None, citations=("P1",), insufficient=False) -> dict:
    """A scripted answer; each citation a ref, or (ref, quote)."""
    return {
        "answer": text,
        "choice": choice,
        "rationale": "The page describes them [P1].",
        "confidence": 0.8,
        "citations": [{"ref": c, "quote": ""} if isinstance(c, str) else {"ref": c[0], "quote": c[1]} for c in citations],
        "insufficient_evidence": insufficient,
    }


@pytest.fixture
def make_agent(agent_library, vlm):  # noqa: F811
    agents = []

    def make(**overrides) -> Agent:
        settings = agent_library.settings.model_copy(
            update={"vlm_base_url": vlm.base_url, "vlm_model": vlm.model} | overrides
        )
        agent = Agent(settings, agent_library.index)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


def events(result: AgentResult, kind) -> list:
    return [event for event in result.trace if isinstance(event, kind)]


def schema_names(vlm: ScriptedVLM) -> list[str]:
    return [request["response_format"]["json_schema"]["name"] for request in vlm.requests]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on leaving: connections are refused


# --- the happy path and routing -------------------------------------------------------------------


def test_routed_mcq_searches_inspects_and_answers_with_checked_citations(make_agent, vlm) -> None:
    vlm.script(plan("Reed-Sternberg cells"), inspection(), answer(choice="a"))
    result = make_agent().run(MCQ_QUESTION, choices=MCQ_CHOICES)

    assert schema_names(vlm) == ["RoutePlan", "Inspection", "Answer"]
    assert all(r["response_format"]["type"] == "json_schema" for r in vlm.requests)
    route = events(result, RouteEvent)[0]
    assert route.by == "model" and route.retrieval
    # The router wrote one query; the agent added one per option it left out.
    searches = events(result, SearchEvent)
    assert [s.option for s in searches] == [None, "A", "B", "C"]
    assert not result.evidence_only and result.choice == "A" and result.confidence == 0.8
    assert [(c.ref, c.page_label) for c in result.citations] == [("P1", HODGKIN_PAGE_LABEL)]
    assert result.usage.prompt_tokens == 300 and result.usage.completion_tokens == 60
    assert result.warnings == [] and result.latency_ms > 0


def test_no_retrieval_route_answers_without_searching(make_agent, vlm) -> None:
    vlm.script(plan(retrieval=False), answer(text="Hello! Ask me a pathology question.", citations=()))
    result = make_agent().run("Hello there")
    assert schema_names(vlm) == ["RoutePlan", "Answer"]
    assert not events(result, SearchEvent) and result.citations == [] and not result.evidence_only


def test_unknown_organ_system_from_the_router_is_dropped(make_agent, vlm) -> None:
    vlm.script(plan("Reed-Sternberg cells", organ_systems=("general", "martian")), inspection(), answer())
    result = make_agent().run("What are Reed-Sternberg cells?")
    assert events(result, RouteEvent)[0].organ_systems == ["general"]
    assert events(result, SearchEvent)[0].hits


def test_router_on_its_own_endpoint(make_agent, vlm) -> None:
    router = ScriptedVLM([plan("Reed-Sternberg cells")], model="router-model")
    try:
        vlm.script(inspection(), answer())
        result = make_agent(router_base_url=router.base_url, router_model=router.model).run("What are RS cells?")
        assert [r["model"] for r in router.requests] == ["router-model"]
        assert schema_names(vlm) == ["Inspection", "Answer"]
        assert events(result, RouteEvent)[0].by == "model"
    finally:
        router.close()


# --- reflection and budgets -----------------------------------------------------------------------


def test_insufficient_evidence_leads_to_a_second_search_round(make_agent, vlm) -> None:
    vlm.script(
        plan("owl-eye nucleoli"),
        inspection(sufficient=False, next_queries=["CD15 CD30 expression"]),
        inspection(sufficient=True),
        answer(),
    )
    result = make_agent().run("Which markers do the cells of Hodgkin lymphoma express?")
    kinds = [event.type for event in result.trace]
    assert kinds == ["route", "search", "inspect", "reflect", "search", "inspect", "reflect", "answer"]
    second = events(result, SearchEvent)[-1]
    assert second.turn == 2 and second.query == "CD15 CD30 expression"
    reflections = events(result, ReflectEvent)
    assert reflections[0].next_queries == ["CD15 CD30 expression"] and not reflections[0].stop_reason
    assert reflections[1].stop_reason == "the evidence suffices"
    # The second inspection saw only pages the first had not.
    first, again = events(result, InspectEvent)
    assert not set(first.pages) & set(again.pages)


def test_max_turns_stops_searching(make_agent, vlm) -> None:
    vlm.script(plan("owl-eye nucleoli"), inspection(sufficient=False, next_queries=["CD30"]), answer())
    result = make_agent(agent_max_turns=1).run("What are Reed-Sternberg cells?")
    assert len({s.turn for s in events(result, SearchEvent)}) == 1
    assert "search-round budget (1)" in events(result, ReflectEvent)[0].stop_reason


def test_token_budget_stops_searching(make_agent, vlm) -> None:
    vlm.script(plan("owl-eye nucleoli"), inspection(sufficient=False, next_queries=["CD30"]), answer(), usage=(600, 50))
    result = make_agent(agent_max_tokens=1_000).run("What are Reed-Sternberg cells?")
    assert "token budget (1000)" in events(result, ReflectEvent)[0].stop_reason
    assert len({s.turn for s in events(result, SearchEvent)}) == 1
    assert result.usage.prompt_tokens == 1_800 and not result.evidence_only  # the answer is still given


def test_wall_clock_budget_cuts_a_slow_model_and_answers_from_evidence(make_agent, vlm) -> None:
    vlm.script(plan("Reed-Sternberg cells"), Slow(5, inspection()), answer())
    started = time.monotonic()
    result = make_agent(agent_max_seconds=2).run(MCQ_QUESTION, choices=MCQ_CHOICES)
    assert time.monotonic() - started < 4.5
    assert result.evidence_only and result.choice == "A" and result.citations
    assert any("inspect" in warning for warning in result.warnings)
    assert schema_names(vlm) == ["RoutePlan", "Inspection"]  # no answer call once the model timed out


# --- citations and abstention ---------------------------------------------------------------------


def test_invented_citation_is_removed_and_reported(make_agent, vlm) -> None:
    vlm.script(plan("Reed-Sternberg cells"), inspection(), answer(citations=["[P1]", "P99", "Robbins p. 45"]))
    result = make_agent().run("What are Reed-Sternberg cells?")
    assert [c.ref for c in result.citations] == ["P1"]
    removed = [event.citation for event in result.trace if event.type == "citation_removed"]
    assert removed == ["P99", "ROBBINS P. 45"]
    assert sum("removed citation" in warning for warning in result.warnings) == 2


def test_citations_carry_the_quoted_passage_as_the_page_gives_it_and_where_it_lies(make_agent, vlm) -> None:
    quote = "reed sternberg cells are large binucleate cells with owl-eye nucleoli"  # a slip: "prominent" left out
    invented = "Hodgkin cells secrete interleukin-99 into the blood."  # not on the page
    vlm.script(plan("Reed-Sternberg cells"), inspection(), answer(citations=[("P1", quote), ("P2", invented)]))
    result = make_agent().run("What are Reed-Sternberg cells?")
    first = result.citations[0]
    assert first.passage == "Reed-Sternberg cells are large binucleate cells with prominent owl-eye nucleoli"
    assert first.boxes and all(0 <= v <= 1 for box in first.boxes for v in box)
    assert all(left < right and top < bottom for left, top, right, bottom in first.boxes)
    second = result.citations[1]  # the invented quote is replaced by the page's best-matching passage
    assert second.passage and "interleukin-99" not in second.passage and second.passage in " ".join(second.snippet.replace("**", "").split())
    assert any("quote given for P2 is not on that page" in warning for warning in result.warnings)


def test_abstention_drops_the_choice(make_agent, vlm) -> None:
    vlm.script(
        plan("Reed-Sternberg cells"),
        inspection(sufficient=True),
        answer(text="The pages do not settle this.", choice="B", citations=(), insufficient=True),
    )
    result = make_agent().run(MCQ_QUESTION, choices=MCQ_CHOICES)
    assert result.insufficient_evidence and result.choice is None and not result.evidence_only
    assert result.answer == "The pages do not settle this."


def test_a_choice_that_is_not_an_option_is_ignored(make_agent, vlm) -> None:
    vlm.script(plan("Reed-Sternberg cells"), inspection(), answer(choice="Z"))
    result = make_agent().run(MCQ_QUESTION, choices=MCQ_CHOICES)
    assert result.choice is None and any("not an option letter" in w for w in result.warnings)


# --- model faults ---------------------------------------------------------------------------------


def test_unreachable_model_gives_evidence_only_with_a_warning(make_agent, vlm) -> None:
    agent = make_agent(vlm_base_url=f"http://127.0.0.1:{closed_port()}/v1")
    started = time.monotonic()
    result = agent.run(MCQ_QUESTION, choices=MCQ_CHOICES)
    assert time.monotonic() - started < 10
    assert result.evidence_only and result.choice == "A"
    assert any("cannot reach" in warning for warning in result.warnings)
    assert events(result, RouteEvent)[0].by == "rules"


def test_server_error_gives_evidence_only_with_a_warning(make_agent, vlm) -> None:
    vlm.script(Status(503))
    result = make_agent().run("What are Reed-Sternberg cells?")
    assert result.evidence_only and any("HTTP 503" in warning for warning in result.warnings)
    assert len(vlm.requests) == 1  # the model is not asked again in this run


def test_timeout_gives_evidence_only_with_a_warning(make_agent, vlm) -> None:
    vlm.script(Slow(3, plan("x")))
    started = time.monotonic()
    result = make_agent(vlm_timeout_s=0.5).run("What are Reed-Sternberg cells?")
    assert time.monotonic() - started < 2.5
    assert result.evidence_only and any("did not answer within" in warning for warning in result.warnings)


def test_invalid_json_gets_one_repair_turn(make_agent, vlm) -> None:
    vlm.script(
        "Sure! I would search for Reed-Sternberg cells.",
        'Here it is:\n```json\n' + __import__("json").dumps(plan("Reed-Sternberg cells")) + "\n```",
        inspection(),
        answer(),
    )
    result = make_agent().run("What are Reed-Sternberg cells?")
    assert events(result, RouteEvent)[0].by == "model" and not result.evidence_only
    repair = vlm.requests[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": "Sure! I would search for Reed-Sternberg cells."}
    assert "could not be used" in repair[-1]["content"]


def test_invalid_json_after_repair_falls_back(make_agent, vlm) -> None:
    vlm.script("not json", {"retrieval": "perhaps"}, inspection(), "still not json", "{}")
    result = make_agent().run("What are Reed-Sternberg cells?")
    assert events(result, RouteEvent)[0].by == "rules"
    assert any(w.startswith("router:") and "did not return a valid RoutePlan" in w for w in result.warnings)
    # The answer call failed twice as well: the result shows the evidence, labelled as such.
    assert result.evidence_only and result.citations
    assert schema_names(vlm) == ["RoutePlan", "RoutePlan", "Inspection", "Answer", "Answer"]


def test_refusal_gives_evidence_only_with_a_warning(make_agent, vlm) -> None:
    vlm.script(plan("Reed-Sternberg cells"), inspection(), Refusal("I cannot help with medical questions."))
    result = make_agent().run("What are Reed-Sternberg cells?")
    assert result.evidence_only and any("declined" in warning for warning in result.warnings)


# --- images ---------------------------------------------------------------------------------------


def _decoded_images(request: dict) -> list[Image.Image]:
    images = []
    for message in request["messages"]:
        if isinstance(message["content"], list):
            for part in message["content"]:
                if part["type"] == "image_url":
                    url = part["image_url"]["url"]
                    assert url.startswith("data:image/jpeg;base64,")
                    images.append(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    return images


def test_images_go_as_data_urls_within_the_pixel_budget(make_agent, vlm) -> None:
    user_image = Image.new("RGB", (1600, 1200), (235, 170, 200))
    route = plan("Reed-Sternberg cells")
    route["queries"][0]["use_image"] = True
    vlm.script(
        route,
        inspection(sufficient=False, zoom=[{"ref": "P1", "box": [0.0, 0.0, 0.5, 0.5]}]),
        inspection(sufficient=True),
        answer(),
    )
    budget = 40_000
    result = make_agent(agent_image_pixels=budget, agent_pages_per_call=2).run(
        "What are these cells?", images=[user_image]
    )
    inspect_pages, zoom, answer_request = (_decoded_images(r) for r in vlm.requests[1:])
    assert len(inspect_pages) == 2 and len(zoom) == 1
    assert len(answer_request) == 1 + 2  # the user's image, then the selected pages
    for image in inspect_pages + zoom + answer_request:
        assert image.width * image.height <= budget
    assert answer_request[0].size == (230, 173)  # 1600x1200 scaled by sqrt(40000 / 1920000)
    assert events(result, InspectEvent)[0].zoomed == ["P1"]
    # A text-only index cannot search by image: said so, and the question was searched by text.
    assert any("no page-image channel" in warning for warning in result.warnings)


# --- threads and streaming ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    """A real PostgreSQL server (pgserver's bundled binaries) on a Unix socket, for the Postgres checkpointer."""
    pgserver = pytest.importorskip("pgserver")
    server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(params=["sqlite", "postgres"])
def thread_settings(request) -> dict:
    if request.param == "sqlite":
        return {}
    return {"checkpoint_postgres_url": SecretStr(request.getfixturevalue("postgres_url"))}


def test_follow_up_in_a_thread_sees_the_earlier_turn(make_agent, vlm, thread_settings) -> None:
    agent = make_agent(**thread_settings)
    vlm.script(plan("Reed-Sternberg cells"), inspection(), answer(text="They are Reed-Sternberg cells."))
    agent.run("Which cells mark Hodgkin lymphoma?", thread_id="thread-follow-up")
    vlm.script(plan("CD15 CD30"), inspection(), answer(text="CD15 and CD30."))
    result = agent.run("Which markers do they express?", thread_id="thread-follow-up")
    router_prompt = vlm.requests[0]["messages"][-1]["content"]
    assert "Which cells mark Hodgkin lymphoma?" in router_prompt and "They are Reed-Sternberg cells." in router_prompt
    assert result.thread_id == "thread-follow-up"
    # Per-question state does not leak between turns: the trace and pages are this question's own.
    assert [e.type for e in result.trace].count("route") == 1
    assert events(result, SearchEvent)[0].hits[0].ref == "P1"  # this question's pages, numbered afresh
    assert not result.warnings
    # Another thread starts empty.
    vlm.script(plan("x"), inspection(), answer())
    agent.run("Unrelated question?", thread_id="thread-other")
    assert "Earlier in this conversation" not in vlm.requests[0]["messages"][-1]["content"]
    # The thread outlives the agent (a server restart): a new agent on the same store continues it.
    agent.close()
    vlm.script(plan("x"), inspection(), answer())
    make_agent(**thread_settings).run("And in which lymph nodes?", thread_id="thread-follow-up")
    assert "CD15 and CD30." in vlm.requests[0]["messages"][-1]["content"]


def test_stream_yields_typed_events_then_the_result(make_agent, vlm) -> None:
    text = "Reed-Sternberg cells are large binucleate cells with owl-eye nucleoli [P1]."
    vlm.script(plan("Reed-Sternberg cells"), inspection(), answer(text))
    streamed = list(make_agent().stream("What are Reed-Sternberg cells?"))
    assert isinstance(streamed[-1], ResultEvent)
    progress = [event for event in streamed[:-1] if event.type != "answer_token"]
    assert [event.type for event in progress] == [event.type for event in streamed[-1].result.trace]
    assert streamed[0].type == "route"
    # The answer text streams in pieces (the scripted server sends 7-character chunks of the JSON
    # reply) before the answer event, and the pieces add up to the final answer.
    tokens = [i for i, event in enumerate(streamed) if event.type == "answer_token"]
    assert len(tokens) > 3 and tokens[-1] < [event.type for event in streamed].index("answer")
    assert "".join(streamed[i].text for i in tokens) == text == streamed[-1].result.answer
    assert vlm.requests[-1]["stream"] is True and vlm.requests[0].get("stream") is not True


def test_a_stop_while_the_answer_streams_cuts_the_model_call_short(agent_library, vlm) -> None:  # noqa: F811
    from agent.api import AgentStopped, Observer, StopSignal

    text = "Reed-Sternberg cells are large binucleate cells with owl-eye nucleoli [P1]."
    vlm.script(plan("Reed-Sternberg cells"), inspection(), answer(text))
    vlm.chunk_delay = 0.1  # about 3 s for the whole streamed answer
    calls = []
    settings = agent_library.settings.model_copy(update={"vlm_base_url": vlm.base_url, "vlm_model": vlm.model})
    agent = Agent(settings, agent_library.index, observer=Observer(on_model_call=calls.append))
    stop = StopSignal()
    pieces = []
    started = time.monotonic()
    with pytest.raises(AgentStopped):
        for event in agent.stream("What are Reed-Sternberg cells?", stop=stop):
            if event.type == "answer_token":
                pieces.append(event.text)
                stop.stop("the client went away")
    agent.close()
    # The answer call ends at the next chunk instead of reading the whole reply.
    assert len(pieces) == 1 and len(pieces[0]) < len(text)
    assert [call.outcome for call in calls] == ["ok", "ok", "timeout"]
    assert time.monotonic() - started < 2.5
