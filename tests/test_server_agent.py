"""The HTTP server with a model: a real uvicorn on loopback, the agent talking to a scripted OpenAI-compatible
server on loopback (tests/scripted_vlm.py). Metrics of model calls, tokens and searches; the request time
limit and client disconnects stopping the agent; chat streaming of progress and answer text."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from indexer.jobs import BookMeta, index_pdf
from rag.page_index import PageIndex
from tests.conftest import write_pathology_book
from tests.scripted_vlm import Slow
from tests.test_agent import answer, inspection, plan
from tests.test_server import USER, server_settings, start_server

pytestmark = pytest.mark.slow

QUESTION = "What are Reed-Sternberg cells?"


@pytest.fixture(scope="module")
def shared_index(tmp_path_factory, text_only_encoders):
    """The six-page book, indexed once; each test starts its own server(s) over it."""
    root = tmp_path_factory.mktemp("server-agent")
    settings = server_settings(root / "data")
    index = PageIndex(settings, encoders=text_only_encoders)
    assert index_pdf(index, write_pathology_book(root / "essentials.pdf"), BookMeta(organ_systems=["general"])).ok
    yield index, settings
    index.close()


@pytest.fixture
def serve(shared_index, vlm):
    """serve(**settings overrides) -> base URL of a server whose agent talks to the scripted model."""
    index, base = shared_index
    stops = []

    def start(**overrides) -> str:
        settings = base.model_copy(
            update={"vlm_base_url": vlm.base_url, "vlm_model": vlm.model, "vlm_max_retries": 0, "vlm_timeout_s": 20}
            | overrides
        )
        url, stop = start_server(settings, index)
        stops.append(stop)
        return url

    yield start
    for stop in stops:
        stop()


def metric(url: str, name: str, **labels: str) -> float:
    """One sample of /metrics (0 when absent), parsed with prometheus_client's own parser."""
    text = httpx.get(url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def sse_events(reply: httpx.Response) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in reply.iter_lines():
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            events.append((name, json.loads(line.split(":", 1)[1])))
    return events


# --- metrics --------------------------------------------------------------------------------------


def test_metrics_count_model_calls_tokens_and_searches(serve, vlm):
    url = serve()
    vlm.script(plan("Reed-Sternberg cells"), inspection(), answer(), usage=(100, 20))
    reply = httpx.post(url + "/v1/ask", headers=USER, json={"question": QUESTION}, timeout=60)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert not body["evidence_only"] and body["usage"]["prompt_tokens"] > 0

    assert metric(url, "pathorag_model_call_seconds_count", role="router", outcome="ok") == 1
    assert metric(url, "pathorag_model_call_seconds_count", role="answerer", outcome="ok") >= 2
    assert metric(url, "pathorag_model_call_seconds_sum", role="answerer", outcome="ok") > 0
    prompt = sum(metric(url, "pathorag_model_tokens_total", role=role, kind="prompt") for role in ("router", "answerer"))
    completion = sum(metric(url, "pathorag_model_tokens_total", role=r, kind="completion") for r in ("router", "answerer"))
    assert prompt == body["usage"]["prompt_tokens"] and completion == body["usage"]["completion_tokens"]
    searches = [event for event in body["trace"] if event["type"] == "search"]
    assert searches and all(event["seconds"] > 0 for event in searches)
    assert metric(url, "pathorag_search_seconds_count", outcome="ok") == len(searches)
    assert metric(url, "pathorag_search_seconds_sum", outcome="ok") > 0
    assert metric(url, "pathorag_agent_seconds_count", evidence_only="false") == 1
    assert metric(url, "pathorag_agent_runs_in_progress") == 0
    assert metric(url, "pathorag_http_request_seconds_count", method="POST", route="/v1/ask", status="200") == 1


# --- the request time limit stops the agent --------------------------------------------------------


def test_time_limit_stops_the_agent_and_its_model_calls(serve, vlm):
    url = serve(request_timeout_s=1.5)
    # The inspect call would answer after 4 s, and an answer call would follow it.
    vlm.script(plan("Reed-Sternberg cells"), Slow(4, inspection()), answer())
    started = time.monotonic()
    reply = httpx.post(url + "/v1/ask", headers=USER, json={"question": QUESTION}, timeout=30)
    took = time.monotonic() - started
    assert reply.status_code == 504 and reply.json()["error"]["type"] == "timeout", reply.text
    assert 1.4 < took < 3.5
    # The agent is not left running: the in-flight call was cut at the limit, and nothing follows it.
    assert wait_for(lambda: metric(url, "pathorag_agent_runs_in_progress") == 0, 1.5)
    time.sleep(4)
    assert [r["response_format"]["json_schema"]["name"] for r in vlm.requests] == ["RoutePlan", "Inspection"]
    assert metric(url, "pathorag_model_call_seconds_count", role="answerer", outcome="timeout") == 1
    assert metric(url, "pathorag_agent_stopped_total", reason="timeout") == 1


def test_time_limit_ends_an_ask_stream_with_a_timeout_event(serve, vlm):
    url = serve(request_timeout_s=1.5)
    vlm.script(plan("Reed-Sternberg cells"), Slow(4, inspection()), answer())
    with httpx.stream("POST", url + "/v1/ask", headers=USER, timeout=30,
                      json={"question": QUESTION, "stream": True}) as reply:
        events = sse_events(reply)
    names = [name for name, _ in events]
    assert names[0] == "route" and "search" in names and names[-1] == "error", names
    assert events[-1][1]["error"]["type"] == "timeout"
    time.sleep(4)
    assert len(vlm.requests) == 2  # no answer call after the limit
    assert metric(url, "pathorag_agent_runs_in_progress") == 0


def test_a_client_that_goes_away_stops_the_agent(serve, vlm):
    from openai import OpenAI

    url = serve()
    vlm.script(plan("Reed-Sternberg cells"), Slow(2, inspection(sufficient=False, next_queries=["CD15"])),
               inspection(), answer())
    client = OpenAI(base_url=url + "/v1", api_key="user-key", timeout=30, max_retries=0)
    stream = client.chat.completions.create(model="pathorag", messages=[{"role": "user", "content": QUESTION}], stream=True)
    for chunk in stream:
        if chunk.choices and (chunk.choices[0].delta.model_extra or {}).get("reasoning_content"):
            break  # the first progress line: the client leaves
    stream.close()
    assert wait_for(lambda: metric(url, "pathorag_agent_stopped_total", reason="disconnect") == 1, 10)
    assert wait_for(lambda: metric(url, "pathorag_agent_runs_in_progress") == 0, 5)
    time.sleep(2.5)
    # At most the inspection in flight when the client left follows the route: no second round, no answer.
    calls = [r["response_format"]["json_schema"]["name"] for r in vlm.requests]
    assert calls in (["RoutePlan"], ["RoutePlan", "Inspection"]), calls


# --- chat streaming --------------------------------------------------------------------------------


def test_chat_stream_sends_progress_as_reasoning_then_the_same_content(serve, vlm):
    from openai import OpenAI

    url = serve()
    client = OpenAI(base_url=url + "/v1", api_key="user-key", timeout=60, max_retries=0)
    messages = [{"role": "user", "content": QUESTION}]
    script = (plan("Reed-Sternberg cells"), inspection(), answer(text="Large binucleate cells with owl-eye nucleoli [P1]."))
    vlm.script(*script)
    plain = client.chat.completions.create(model="pathorag", messages=messages).choices[0].message.content
    vlm.script(*script)
    chunks = list(client.chat.completions.create(model="pathorag", messages=messages, stream=True))
    kinds = []
    reasoning, content = "", ""
    for chunk in chunks:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        thought = (delta.model_extra or {}).get("reasoning_content")
        if thought:
            kinds.append("reasoning")
            reasoning += thought
        if delta.content:
            kinds.append("content")
            content += delta.content
    def unsigned(text: str) -> str:  # each request signs its page links with its own expiry
        return re.sub(r"expires=\d+|signature=[0-9a-f]+", "", text)

    assert unsigned(content) == unsigned(plain) and "Sources:" in content and content.startswith("Large binucleate cells")
    assert kinds.index("reasoning") < kinds.index("content")
    # the answer came token by token (the scripted model streams a few characters at a time), then the rest
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3 and "Sources:" not in pieces[0] and pieces[0] != content
    assert "Reasoning" not in content and "Searching:" not in content  # progress stays out of the answer
    assert "Planning (model): " in reasoning and "Searching: Reed-Sternberg cells → " in reasoning
    assert "Reading pages P1" in reasoning and "Done searching: the evidence suffices." in reasoning
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_chat_stream_raw_lines_end_with_done_and_langchain_streams(serve, vlm):
    from langchain_openai import ChatOpenAI

    url = serve()
    vlm.script(plan("Reed-Sternberg cells"), inspection(), answer())
    body = {"model": "pathorag", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    with httpx.stream("POST", url + "/v1/chat/completions", headers=USER, json=body, timeout=60) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in reply.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line[5:]) for line in lines[:-1]]
    first_reasoning = next(i for i, p in enumerate(payloads) if p["choices"] and p["choices"][0]["delta"].get("reasoning_content"))
    first_content = next(i for i, p in enumerate(payloads) if p["choices"] and p["choices"][0]["delta"].get("content"))
    assert first_reasoning < first_content
    assert payloads[-1]["citations"] and payloads[-1]["choices"][0]["finish_reason"] == "stop"

    vlm.script(plan("Reed-Sternberg cells"), inspection(), answer())
    llm = ChatOpenAI(base_url=url + "/v1", api_key="user-key", model="pathorag", timeout=60, max_retries=0)
    streamed = "".join(chunk.content for chunk in llm.stream(QUESTION))
    assert streamed.startswith("Reed-Sternberg cells.") and "Sources:" in streamed and "Searching:" not in streamed


def test_ask_stream_passes_answer_tokens_through(serve, vlm):
    """The model's answer, streamed by the agent as answer_token events, arrives before the result."""
    url = serve()
    vlm.script(plan("Reed-Sternberg cells"), inspection(), answer(text="Owl-eye nucleoli mark them [P1]."))
    with httpx.stream("POST", url + "/v1/ask", headers=USER, timeout=60, json={"question": QUESTION, "stream": True}) as reply:
        events = sse_events(reply)
    names = [name for name, _ in events]
    assert names[0] == "route" and names[-1] == "result" and "answer" in names
    tokens = [data["text"] for name, data in events if name == "answer_token"]
    assert len(tokens) > 1 and "".join(tokens) == events[-1][1]["answer"] == "Owl-eye nucleoli mark them [P1]."
    assert names.index("inspect") < names.index("answer_token") < names.index("answer") < names.index("result")


def test_questions_beyond_the_limit_get_503_with_retry_after(serve, vlm):
    url = serve(max_questions_in_flight=1)
    vlm.script(plan("Reed-Sternberg cells"), Slow(2, inspection()), answer(), plan("x"), inspection(), answer())
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, url + "/v1/ask", headers=USER, json={"question": QUESTION})
        assert wait_for(lambda: metric(url, "pathorag_agent_runs_in_progress") == 1, 5)
        for path, body in (("/v1/ask", {"question": QUESTION, "stream": True}),
                           ("/v1/chat/completions", {"model": "pathorag", "messages": [{"role": "user", "content": QUESTION}]})):
            refused = client.post(url + path, headers=USER, json=body)
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "2", refused.text
            assert refused.json()["error"]["type"] == "overloaded"
        assert first.result().status_code == 200
        # The slot is free again once the first answer is done.
        assert client.post(url + "/v1/ask", headers=USER, json={"question": QUESTION}).status_code == 200


def test_per_request_options_share_the_model_call_limit(serve, vlm):
    """`top_k` / `max_turns` go with the run: such requests use the one shared agent, so model calls
    in flight never exceed `vlm_concurrency` however many of them arrive at once."""
    url = serve(vlm_concurrency=2)
    questions = 6
    vlm.script(*[Slow(0.4, reply) for _ in range(questions) for reply in (plan("Reed-Sternberg cells"), inspection(), answer())])
    body = {"question": QUESTION, "top_k": 3, "max_turns": 1}
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(questions) as pool:
        replies = list(pool.map(lambda _: client.post(url + "/v1/ask", headers=USER, json=body), range(questions)))

    assert all(reply.status_code == 200 for reply in replies), [reply.text for reply in replies]
    assert vlm.max_in_flight == 2  # all six questions were answered, never more than two calls at once


def test_per_request_options_are_checked(serve, vlm):
    url = serve()
    reply = httpx.post(url + "/v1/ask", headers=USER, json={"question": QUESTION, "top_k": 0}, timeout=30)
    assert reply.status_code == 422 and "top_k" in reply.json()["error"]["message"]


# --- a model that fails ---------------------------------------------------------------------------


def test_a_model_down_slow_or_garbled_degrades_every_answer_and_recovers(serve, vlm):
    """While the model misbehaves, every question still gets its evidence (200, within the time limit,
    with a warning saying why); when the model is back, answers are the model's again."""
    url = serve(vlm_timeout_s=1.0, request_timeout_s=30)

    def ask_many(questions: int = 6) -> list[dict]:
        with httpx.Client(timeout=60) as client, ThreadPoolExecutor(questions) as pool:
            replies = list(pool.map(lambda _: client.post(url + "/v1/ask", headers=USER, json={"question": QUESTION}),
                                    range(questions)))
        assert [reply.status_code for reply in replies] == [200] * questions, [r.text for r in replies]
        bodies = [reply.json() for reply in replies]
        assert all(body["evidence_only"] and body["citations"] and body["warnings"] for body in bodies)
        return bodies

    vlm.script(*["this is not JSON, nor an answer"] * 60)  # garbled replies
    assert all(any("router" in w for w in body["warnings"]) for body in ask_many())

    vlm.script(*[Slow(3.0, plan("Reed-Sternberg cells"))] * 60)  # slower than vlm_timeout_s
    started = time.monotonic()
    ask_many()
    assert time.monotonic() - started < 20

    vlm.down()  # connections refused
    try:
        ask_many()
    finally:
        vlm.up()

    vlm.script(plan("Reed-Sternberg cells"), inspection(), answer())  # back: no restart needed
    recovered = httpx.post(url + "/v1/ask", headers=USER, json={"question": QUESTION}, timeout=60).json()
    assert not recovered["evidence_only"] and recovered["citations"] and not recovered["warnings"]
