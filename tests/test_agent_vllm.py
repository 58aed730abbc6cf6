"""The agent against a real vLLM server (CPU build, tiny random-weight Qwen2-VL); skipped without vLLM.

A random-weight model says nothing meaningful, so the test checks the contract, not the answer:
the run ends in a result (the model's, or evidence only with warnings), images travel, and every
citation names a page retrieved in this run.
"""

from __future__ import annotations

import pytest
from PIL import Image

from agent import Agent
from agent.state import SearchEvent
from tests.agent_support import MCQ_CHOICES, MCQ_QUESTION, agent_library  # noqa: F401

pytestmark = pytest.mark.slow


def test_agent_runs_end_to_end_against_vllm(vllm_server, agent_library) -> None:  # noqa: F811
    settings = agent_library.settings.model_copy(
        update={
            "vlm_base_url": vllm_server.base_url,
            "vlm_model": vllm_server.model,
            "vlm_timeout_s": 120,
            "agent_max_turns": 1,
            "agent_pages_per_call": 1,
            "agent_image_pixels": 28 * 28 * 16,  # a few visual tokens: the tiny model has a 2048-token context
            "agent_max_output_tokens": 96,
            "agent_max_seconds": 400,
        }
    )
    agent = Agent(settings, agent_library.index)
    try:
        result = agent.run(MCQ_QUESTION, images=[Image.new("RGB", (64, 64), (230, 160, 200))], choices=MCQ_CHOICES)
    finally:
        agent.close()
    retrieved = {(hit.book_id, hit.page) for event in result.trace if isinstance(event, SearchEvent) for hit in event.hits}
    assert result.trace[0].type == "route" and result.usage.prompt_tokens > 0  # the server was asked
    assert all((c.book_id, c.page) in retrieved for c in result.citations)
    if result.evidence_only:  # a model is configured: falling back must say why
        assert result.warnings
    else:
        assert result.choice in (None, "A", "B", "C")
