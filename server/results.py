"""An agent's result -> the protocol's models: citations (with their page image URLs and signed links), usage,
the ask response."""

from __future__ import annotations

from agent.state import AgentResult
from server.page_links import PageLinker
from server.protocol import AskResponse, CitationOut, UsageOut


def citations(result: AgentResult, link: PageLinker) -> list[CitationOut]:
    return [
        CitationOut(**c.model_dump(), image_url=f"/v1/pages/{c.book_id}/{c.page}", link=link(c.book_id, c.page, c.boxes))
        for c in result.citations
    ]


def usage(result: AgentResult) -> UsageOut:
    prompt, completion = result.usage.prompt_tokens, result.usage.completion_tokens
    return UsageOut(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def ask_response(result: AgentResult, link: PageLinker) -> AskResponse:
    return AskResponse(
        **result.model_dump(exclude={"citations", "usage"}), citations=citations(result, link), usage=usage(result)
    )
