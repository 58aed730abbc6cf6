"""An agent's result -> the protocol's models: citations (with their page image and figure crop URLs and
signed links), usage, the ask response."""

from __future__ import annotations

from agent.state import AgentResult
from server.page_links import PageLinker
from server.protocol import AskResponse, CitationOut, FigureOut, UsageOut


def citations(result: AgentResult, link: PageLinker) -> list[CitationOut]:
    out = []
    for c in result.citations:
        page_url, page_link = f"/v1/pages/{c.book_id}/{c.page}", link(c.book_id, c.page, c.boxes)
        address, signed = page_link.split("?", 1)  # a page's link opens its figures too
        figures = [
            FigureOut(**f.model_dump(), image_url=f"{page_url}/figures/{n}", link=f"{address}/figures/{n}?{signed}")
            for n, f in enumerate(c.figures, start=1)
        ]
        fields = c.model_dump(exclude={"figures"})
        out.append(CitationOut(**fields, figures=figures, image_url=page_url, link=page_link))
    return out


def usage(result: AgentResult) -> UsageOut:
    prompt, completion = result.usage.prompt_tokens, result.usage.completion_tokens
    return UsageOut(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def ask_response(result: AgentResult, link: PageLinker) -> AskResponse:
    return AskResponse(
        **result.model_dump(exclude={"citations", "usage"}), citations=citations(result, link), usage=usage(result)
    )
