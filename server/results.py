"""An agent's result -> the protocol's models: citations (with their page image URLs), usage, the ask response."""

from __future__ import annotations

from agent.state import AgentResult
from server.protocol import AskResponse, CitationOut, UsageOut


def citations(result: AgentResult) -> list[CitationOut]:
    return [CitationOut(**c.model_dump(), image_url=f"/v1/pages/{c.book_id}/{c.page}") for c in result.citations]


def usage(result: AgentResult) -> UsageOut:
    prompt, completion = result.usage.prompt_tokens, result.usage.completion_tokens
    return UsageOut(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def ask_response(result: AgentResult) -> AskResponse:
    return AskResponse(
        answer=result.answer, choice=result.choice, rationale=result.rationale, confidence=result.confidence,
        evidence_only=result.evidence_only, insufficient_evidence=result.insufficient_evidence,
        option_support=result.option_support, citations=citations(result), trace=result.trace,
        warnings=result.warnings, usage=usage(result), latency_ms=result.latency_ms, thread_id=result.thread_id,
    )
