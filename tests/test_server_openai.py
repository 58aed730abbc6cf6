"""The OpenAI-compatible API with real clients (openai, LangChain), schemathesis, and one run against vLLM."""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.test_server import USER, live_server, png_data_url, server_settings, start_server  # noqa: F401

pytestmark = pytest.mark.slow


def test_openai_client_non_streaming_and_streaming(live_server):  # noqa: F811
    from openai import OpenAI

    client = OpenAI(base_url=live_server.url + "/v1", api_key="user-key", timeout=120)
    assert [m.id for m in client.models.list().data] == ["pathorag"]
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "Which cells are characteristic of Hodgkin lymphoma?"},
        {"type": "image_url", "image_url": {"url": png_data_url()}},
    ]}]
    completion = client.chat.completions.create(model="pathorag", messages=messages)
    text = completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop" and "Sources:" in text and "[P" in text
    assert completion.model_extra["citations"][0]["image_url"].startswith("/v1/pages/")
    assert completion.usage is not None
    chunks = list(client.chat.completions.create(
        model="pathorag", messages=messages, stream=True, stream_options={"include_usage": True}
    ))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Sources:" in streamed
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None


def test_chat_multi_turn_tasks_and_tools(live_server):  # noqa: F811
    body = {
        "model": "pathorag",
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Tell me about Hodgkin lymphoma."},
            {"role": "assistant", "content": "Reed-Sternberg cells... Sources: [P1] x"},
            {"role": "user", "content": "Which markers do those cells express?"},
        ],
        "tools": [{"type": "function", "function": {"name": "web_search", "parameters": {"type": "object"}}}],
    }
    reply = httpx.post(live_server.url + "/v1/chat/completions", headers=USER, json=body, timeout=120)
    assert reply.status_code == 200 and reply.json()["citations"]
    task = {"model": "pathorag", "stream": True, "messages": [{"role": "user", "content":
            "### Task:\nGenerate a concise title for the chat history.\n### Chat History:\nUSER: granuloma"}]}
    with httpx.stream("POST", live_server.url + "/v1/chat/completions", headers=USER, json=task) as streamed:
        lines = [line for line in streamed.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]" and "title" in "".join(lines)
    no_user = httpx.post(live_server.url + "/v1/chat/completions", headers=USER,
                         json={"model": "x", "messages": [{"role": "system", "content": "hi"}]})
    assert no_user.status_code == 422 and no_user.json()["error"]["message"]


def test_langchain_chat_openai(live_server):  # noqa: F811
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=live_server.url + "/v1", api_key="user-key", model="pathorag", timeout=120, max_retries=0)
    answer = llm.invoke("What is caseous necrosis?")
    assert "Sources:" in answer.content
    streamed = "".join(chunk.content for chunk in llm.stream("What is caseous necrosis?"))
    assert "Sources:" in streamed


def test_openapi_schema_has_no_server_errors(live_server):  # noqa: F811
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(live_server.url + "/openapi.json", headers=USER)
    failures = []
    for operation in schema.get_all_operations():
        op = operation.ok()
        if op.method.upper() == "DELETE" or op.path in ("/v1/books",) and op.method.upper() == "POST":
            continue  # destructive / slow; covered by the books test

        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def check(case):
            response = case.call(headers=USER, timeout=60)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")

        check()
    assert not failures, failures


def test_chat_end_to_end_against_vllm(vllm_server, tmp_path, text_only_encoders):
    from openai import OpenAI

    from indexer.jobs import index_pdf
    from rag.page_index import PageIndex
    from tests.conftest import write_pathology_book

    settings = server_settings(
        tmp_path / "data", vlm_base_url=vllm_server.base_url, vlm_model=vllm_server.model, vlm_timeout_s=120,
        agent_max_turns=1, agent_pages_per_call=1, agent_image_pixels=28 * 28 * 16, agent_max_output_tokens=96,
        agent_max_seconds=400, vlm_max_retries=0, request_timeout_s=500,
    )
    index = PageIndex(settings, encoders=text_only_encoders)
    assert index_pdf(index, write_pathology_book(tmp_path / "book.pdf")).ok
    url, stop = start_server(settings, index)
    try:
        assert httpx.get(url + "/readyz").status_code == 200
        client = OpenAI(base_url=url + "/v1", api_key="user-key", timeout=500, max_retries=0)
        completion = client.chat.completions.create(model="pathorag", messages=[{"role": "user", "content": "What is a granuloma?"}])
        assert completion.choices[0].message.content and completion.usage.prompt_tokens > 0
    finally:
        stop()
        index.close()


def test_chat_sources_quote_their_passage_and_link_the_page_without_a_key(live_server):  # noqa: F811
    from server.page_links import PageLinks

    body = {"model": "pathorag", "messages": [{"role": "user", "content": "Which cells are characteristic of Hodgkin lymphoma?"}]}
    reply = httpx.post(live_server.url + "/v1/chat/completions", headers=USER, json=body, timeout=120).json()
    text = reply["choices"][0]["message"]["content"]
    first = reply["citations"][0]
    assert first["link"].startswith(live_server.url + f"/v1/pages/{first['book_id']}/{first['page']}?expires=")
    assert f"[open page]({first['link']})" in text
    annotation = reply["choices"][0]["message"]["annotations"][0]  # OpenAI's url_citation, for clients that list sources
    assert annotation == {"type": "url_citation", "url_citation": {
        "url": first["link"], "title": f"[P1] {first['title']}, p. {first['page_label']}"}}
    assert "\n> " in text and "Reed-Sternberg" in text.split("Sources:")[1]  # the passage under its source
    page = httpx.get(first["link"])  # no API key
    assert page.status_code == 200 and page.headers["content-type"] == "image/webp"
    assert httpx.get(first["link"] + "&size=thumb").status_code == 200

    other_page = first["link"].replace(f"/{first['page']}?", f"/{first['page'] + 1}?")
    altered = first["link"][:-4] + ("0000" if not first["link"].endswith("0000") else "1111")
    expired = PageLinks(live_server.settings).url(live_server.url, first["book_id"], first["page"], now=time.time() - 7200)
    for link, says in ((other_page, "not valid"), (altered, "not valid"), (expired, "expired")):
        refused = httpx.get(link)
        assert refused.status_code == 403 and says in refused.json()["error"]["message"], link
    assert httpx.get(first["link"].split("?")[0]).status_code == 401  # the plain URL still needs the key
    ask = httpx.post(live_server.url + "/v1/ask", headers=USER, json={"question": "What is caseous necrosis?"}, timeout=120).json()
    assert httpx.get(ask["citations"][0]["link"]).status_code == 200


def test_a_page_link_opens_the_page_with_its_passage_highlighted(live_server):  # noqa: F811
    ask = httpx.post(live_server.url + "/v1/ask", headers=USER, json={"question": "Which cells are characteristic of Hodgkin lymphoma?"}, timeout=120).json()
    first = ask["citations"][0]
    assert "Reed-Sternberg cells are large binucleate cells" in first["passage"] and first["boxes"]
    assert "&highlight=" in first["link"]
    marked = np.asarray(Image.open(io.BytesIO(httpx.get(first["link"]).content)).convert("RGB")).astype(int)
    plain = np.asarray(Image.open(io.BytesIO(httpx.get(live_server.url + first["image_url"], headers=USER).content)).convert("RGB")).astype(int)
    height, width = plain.shape[:2]
    left, top, right, bottom = first["boxes"][0]
    region = (slice(int(top * height), int(bottom * height) + 1), slice(int(left * width), int(right * width) + 1))
    yellowing = (plain[region][..., 2] - marked[region][..., 2]).mean()  # the highlighter takes blue out
    assert yellowing > 30 and abs(plain[: height // 20] - marked[: height // 20]).max() < 16  # the page's top is untouched

    unmarked = first["link"].replace("&highlight=", "&highlight=0,0,1000,1000,")  # a box added: not what was signed
    assert httpx.get(unmarked).status_code == 403
    for bad in ("1,2,3", "0,0,2000,10", "a,b,c,d"):
        refused = httpx.get(live_server.url + first["image_url"], headers=USER, params={"highlight": bad})
        assert refused.status_code == 400 and "highlight" in refused.json()["error"]["message"], bad
