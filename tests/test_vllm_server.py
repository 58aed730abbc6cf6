"""Smoke test of the real vLLM server (CPU build) serving the tiny random Qwen2-VL, through `openai`.

The model's weights are random: its text is noise, so the tests check the protocol (a completion
comes back for text and image chats) and what vLLM guarantees regardless of the weights: structured
outputs that follow a JSON schema, and forced tool calls whose arguments follow the tool's schema.
"""

from __future__ import annotations

import base64
import io
import json
import time

import pytest
from PIL import Image, ImageDraw

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.slow

FINDING_SCHEMA = {
    "type": "object",
    "properties": {
        "diagnosis": {"type": "string", "enum": ["granuloma", "carcinoma", "normal"]},
        "malignant": {"type": "boolean"},
        "pages": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 999}, "maxItems": 3},
    },
    "required": ["diagnosis", "malignant", "pages"],
    "additionalProperties": False,
}


def _check_finding(value: object) -> None:
    """A hand-written validator for FINDING_SCHEMA (jsonschema is not a project dependency)."""
    assert isinstance(value, dict) and set(value) == {"diagnosis", "malignant", "pages"}, value
    assert value["diagnosis"] in {"granuloma", "carcinoma", "normal"}
    assert isinstance(value["malignant"], bool)
    assert isinstance(value["pages"], list) and len(value["pages"]) <= 3
    assert all(isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 999 for p in value["pages"])


def _png_data_url(width: int = 400, height: int = 300) -> str:
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((60, 60, 220, 220), fill=(200, 80, 160), outline="black")  # an H&E-ish pink blob
    draw.text((10, 10), "granuloma", fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def client(vllm_server):
    print(f"\nvLLM server ready in {vllm_server.started_in_s:.1f} s at {vllm_server.base_url}")
    return openai.OpenAI(base_url=vllm_server.base_url, api_key="unused", timeout=120, max_retries=0)


def _timed(label: str, call):
    start = time.perf_counter()
    result = call()
    print(f"{label}: {1000 * (time.perf_counter() - start):.0f} ms")
    return result


def test_lists_the_served_model(client, vllm_server):
    models = [m.id for m in client.models.list().data]
    assert models == [vllm_server.model] == ["tiny-vlm"]


def test_text_chat(client, vllm_server):
    response = _timed(
        "text chat (16 tokens)",
        lambda: client.chat.completions.create(
            model=vllm_server.model,
            messages=[
                {"role": "system", "content": "You are a pathology assistant."},
                {"role": "user", "content": "What is a granuloma?"},
            ],
            max_tokens=16,
            temperature=0,
        ),
    )
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in {"stop", "length"}
    assert 0 < response.usage.completion_tokens <= 16


def test_image_chat(client, vllm_server):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is shown?"},
                {"type": "image_url", "image_url": {"url": _png_data_url()}},
            ],
        }
    ]
    text_only = client.chat.completions.create(
        model=vllm_server.model, messages=[{"role": "user", "content": "What is shown?"}], max_tokens=1
    )
    response = _timed(
        "image chat (16 tokens)",
        lambda: client.chat.completions.create(
            model=vllm_server.model, messages=messages, max_tokens=16, temperature=0
        ),
    )
    assert isinstance(response.choices[0].message.content, str)
    assert response.usage.completion_tokens > 0
    # the image became visual tokens in the prompt (a 400x300 image: 10 x 14 patches of 28 px merged)
    assert response.usage.prompt_tokens > text_only.usage.prompt_tokens + 20


def test_json_schema_response_format(client, vllm_server):
    response = _timed(
        "json_schema chat",
        lambda: client.chat.completions.create(
            model=vllm_server.model,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": _png_data_url()}},
                        {"type": "text", "text": "Classify the lesion as JSON."},
                    ],
                }
            ],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "finding", "schema": FINDING_SCHEMA, "strict": True},
            },
            max_tokens=200,
            temperature=0,
        ),
    )
    choice = response.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    _check_finding(json.loads(choice.message.content))


def test_json_schema_holds_when_sampling(client, vllm_server):
    """Not just greedy decoding: sampled answers from the random model follow the schema too."""
    response = client.chat.completions.create(
        model=vllm_server.model,
        messages=[{"role": "user", "content": "Classify the lesion as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "finding", "schema": FINDING_SCHEMA}},
        max_tokens=200,
        temperature=1.0,
        seed=7,
        n=3,
    )
    for choice in response.choices:
        assert choice.finish_reason == "stop", choice.message.content
        _check_finding(json.loads(choice.message.content))


@pytest.mark.parametrize(
    "tool_choice", [{"type": "function", "function": {"name": "search_pages"}}, "required"], ids=["named", "required"]
)
def test_forced_tool_call(client, vllm_server, tool_choice):
    tool = {
        "type": "function",
        "function": {
            "name": "search_pages",
            "description": "Search the indexed pathology textbooks.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "maxLength": 40},
                    "top_k": {"type": "integer", "enum": [3, 5, 10]},
                },
                "required": ["query", "top_k"],
                "additionalProperties": False,
            },
        },
    }
    response = _timed(
        f"forced tool call ({tool_choice if isinstance(tool_choice, str) else 'named'})",
        lambda: client.chat.completions.create(
            model=vllm_server.model,
            messages=[{"role": "user", "content": "Find pages about caseous necrosis."}],
            tools=[tool],
            tool_choice=tool_choice,
            max_tokens=200,
            temperature=0,
        ),
    )
    calls = response.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "search_pages", response.choices[0]
    # xgrammar lets raw control characters into JSON strings (a random model emits them): strict=False
    arguments = json.loads(calls[0].function.arguments, strict=False)
    assert set(arguments) == {"query", "top_k"} and arguments["top_k"] in {3, 5, 10}
    assert isinstance(arguments["query"], str) and len(arguments["query"]) <= 40
