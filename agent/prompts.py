"""What the agent asks the models: reply schemas (pydantic) and the messages that carry the question.

Pages are named by refs (P1, P2, ...) that the models cite; the agent maps refs back to book pages
and drops any ref it did not show.
"""

from __future__ import annotations

import string

from pydantic import BaseModel, Field

from agent.state import Page, Turn

LETTERS = string.ascii_uppercase
PAGE_TEXT_CHARS = 1_500

SYSTEM = (
    "You assist pathologists. You answer from pathology textbook pages that a search engine retrieved, "
    "and you cite the pages you used by their refs, e.g. [P3]. Do not cite pages you were not shown. "
    "When the pages do not support an answer, say so rather than guess."
)


# --- reply schemas ------------------------------------------------------------------------------


class PlannedQuery(BaseModel):
    text: str = Field(description="A search query for the textbook index.")
    option: str | None = Field(None, description="The option letter this query checks (multiple choice), else null.")
    use_image: bool = Field(False, description="Also search with the user's image.")


class RoutePlan(BaseModel):
    retrieval: bool = Field(description="Whether textbook pages are needed to answer.")
    organ_systems: list[str] = Field(default_factory=list, description="Organ systems to restrict the search to.")
    queries: list[PlannedQuery] = Field(default_factory=list, max_length=12)
    reason: str = ""


class Zoom(BaseModel):
    ref: str = Field(description="The page to look at more closely, e.g. P2.")
    box: list[float] = Field(
        min_length=4, max_length=4, description="Region as [left, top, right, bottom] fractions of the page (0..1)."
    )


class Inspection(BaseModel):
    summary: str = Field(description="The evidence the pages give for the question, citing refs like [P1].")
    relevant: list[str] = Field(default_factory=list, description="Refs of the pages that bear on the question.")
    sufficient: bool = Field(description="Whether the evidence so far suffices to answer.")
    zoom: list[Zoom] = Field(default_factory=list, max_length=2, description="Regions to see in more detail.")
    next_queries: list[str] = Field(
        default_factory=list, max_length=6, description="If not sufficient: new searches that could fill the gap."
    )


class CitedRef(BaseModel):
    ref: str = Field(description="The ref of a page that supports the answer, e.g. P1.")
    quote: str = Field("", description="The sentence of that page the answer relies on, copied word for word.")


class Answer(BaseModel):
    answer: str
    choice: str | None = Field(None, description="The letter of the chosen option (multiple choice), else null.")
    rationale: str = ""
    confidence: float = Field(0.5, ge=0, le=1)
    citations: list[CitedRef] = Field(default_factory=list, description="The pages that support the answer.")
    insufficient_evidence: bool = Field(False, description="True when the evidence does not support an answer.")


# --- messages -----------------------------------------------------------------------------------


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _image(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def question_block(question: str, choices: list[str]) -> str:
    lines = [f"Question: {question}"]
    lines += [f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices)]
    return "\n".join(lines)


def page_heading(page: Page) -> str:
    label = page["page_label"] or str(page["page"])
    section = f" — {page['section']}" if page["section"] else ""
    return f"[{page['ref']}] {page['title']}, page {label}{section}"


def route_messages(
    question: str, choices: list[str], history: list[Turn], organ_systems: list[str], image_count: int
) -> list[dict]:
    rules = [
        "Plan the textbook search for this question. Decide whether textbook pages are needed "
        "(greetings or questions outside pathology need none).",
        "Write short, specific search queries (keywords a textbook page would contain); split a compound "
        "question into sub-queries.",
    ]
    if choices:
        rules.append("It is multiple choice: write at least one query per option, with that option's letter.")
    if image_count:
        rules.append(f"The user attached {image_count} image(s); set use_image on queries that the picture helps.")
    if organ_systems:
        rules.append(
            "Restrict organ_systems only when the question clearly concerns them; choose from: "
            + ", ".join(organ_systems)
        )
    else:
        rules.append("Leave organ_systems empty.")
    parts = []
    if history:
        earlier = "\n".join(f"Q: {turn['question']}\nA: {turn['answer']}" for turn in history[-3:])
        parts.append(f"Earlier in this conversation:\n{earlier}\n")
    parts.append("\n".join(rules))
    parts.append(question_block(question, choices))
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def _page_parts(pages: list[tuple[Page, str | None]]) -> list[dict]:
    parts = []
    for page, url in pages:
        excerpt = " ".join(page["text"].split())[:PAGE_TEXT_CHARS]
        parts.append(_text(f"{page_heading(page)}\nPage text: {excerpt}"))
        if url:
            parts.append(_image(url))
    return parts


def inspect_messages(
    question: str,
    choices: list[str],
    pages: list[tuple[Page, str | None]],
    evidence: str,
    zooms: list[tuple[Page, str]] = (),
    figures: list[tuple[Page, dict, str]] = (),
) -> list[dict]:
    intro = (
        "Read these retrieved textbook pages and state the evidence they give for the question, citing refs. "
        "Judge whether the evidence so far suffices to answer. If it does not, propose new searches. "
        "To see a figure in detail, ask to zoom into a region of a page."
    )
    parts = [_text(f"{intro}\n\n{question_block(question, choices)}")]
    if evidence:
        parts.append(_text(f"Evidence gathered so far:\n{evidence}"))
    parts += _page_parts(pages)
    for page, figure, url in figures:
        name = f"Fig. {figure['number']}" if figure["number"] else "A figure"
        matched = page.get("matched_figure") and page["figures"][page["matched_figure"] - 1] == figure
        caption = f": {figure['caption']}" if figure["caption"] else ""
        found = " (of the page's figures, the closest to the question's image)" if matched else ""
        parts += [_text(f"{name} of [{page['ref']}], cropped{found}{caption}"), _image(url)]
    for page, url in zooms:
        parts += [_text(f"Zoomed region of [{page['ref']}]:"), _image(url)]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": parts}]


def answer_messages(
    question: str,
    choices: list[str],
    user_images: list[str],
    pages: list[tuple[Page, str | None]],
    evidence: str,
    history: list[Turn],
    searched: bool,
) -> list[dict]:
    task = (
        "Answer the question from the textbook evidence, citing the refs of the pages that support it, each "
        "with the sentence of that page you rely on, quoted word for word."
    )
    if choices:
        task += " Give the letter of the best option as choice."
    if not pages and searched:
        task = (
            "The textbook search found no pages for this question. Unless the answer is basic, settled "
            "knowledge, set insufficient_evidence and say that the textbooks gave no evidence. Cite nothing."
        )
    elif not pages:
        task = "Answer the question; it needs no textbook pages, so cite none."
    parts = []
    if history:
        earlier = "\n".join(f"Q: {turn['question']}\nA: {turn['answer']}" for turn in history[-3:])
        parts.append(_text(f"Earlier in this conversation:\n{earlier}"))
    parts.append(_text(f"{task}\n\n{question_block(question, choices)}"))
    if user_images:
        parts.append(_text("The user's image(s):"))
        parts += [_image(url) for url in user_images]
    if evidence:
        parts.append(_text(f"Evidence summary:\n{evidence}"))
    parts += _page_parts(pages)
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": parts}]
