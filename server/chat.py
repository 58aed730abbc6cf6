"""OpenAI chat completions <-> the agent: the question from the messages, the answer as readable text,
and, when streaming, the agent's progress as one line per step (`agent.trace.describe_event`, sent as
`reasoning_content`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.errors import AgentInputError
from agent.state import AgentResult
from rag.search import snippet_text
from server.protocol import Annotation, ChatCompletionRequest, ChatMessage, CitationOut, UrlCitation

TASK_MARKER = "### Task:"
_CONTEXT_TURN_CHARS = 400
_QUOTE_CHARS = 240  # the passage quoted under each source


@dataclass
class ChatQuestion:
    question: str
    images: list[str] = field(default_factory=list)  # image references (data URLs, URLs)
    task: str | None = None  # an Open WebUI housekeeping task (title, tags, ...): answered without retrieval


def _text_and_images(message: ChatMessage) -> tuple[str, list[str]]:
    content = message.content
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts, images = [], []
    for part in content:
        if part.type == "text" and part.text:
            texts.append(part.text)
        elif part.type == "image_url" and part.image_url is not None:
            images.append(part.image_url if isinstance(part.image_url, str) else part.image_url.url)
    return "\n".join(texts), images


def chat_question(request: ChatCompletionRequest, max_chars: int) -> ChatQuestion:
    """The last user message is the question (with its images); earlier turns are given as brief context."""
    users = [i for i, message in enumerate(request.messages) if message.role == "user"]
    if not users:
        raise AgentInputError("the messages contain no user message")
    last = users[-1]
    question, images = _text_and_images(request.messages[last])
    question = question.strip()
    if TASK_MARKER in question:
        return ChatQuestion(question=question, task=question)
    context = []
    for message in request.messages[:last]:
        if message.role not in ("user", "assistant"):
            continue  # system prompts of chat front-ends are not pathology context
        text, _ = _text_and_images(message)
        text = " ".join(text.split())
        if message.role == "assistant":
            text = text.split(" Sources: ")[0]
        if text:
            context.append(f"{message.role}: {text[:_CONTEXT_TURN_CHARS]}")
    if context and question:
        prefix = "Earlier in this conversation:\n"
        budget = max_chars - len(question) - len(prefix) - len("\n\nQuestion: ")
        kept: list[str] = []
        for line in reversed(context):  # the most recent turns matter most
            if budget - len(line) - 1 < 0:
                break
            kept.insert(0, line)
            budget -= len(line) + 1
        if kept:
            question = prefix + "\n".join(kept) + "\n\nQuestion: " + question
    return ChatQuestion(question=question, images=images)


def task_reply(task: str) -> str:
    """A short reply to a chat front-end's housekeeping request (no retrieval, no model)."""
    lowered = task.lower()
    if "title" in lowered:
        return '{"title": "Pathology question"}'
    if "tags" in lowered:
        return '{"tags": ["Pathology"]}'
    if "follow" in lowered:
        return '{"follow_ups": []}'
    if "queries" in lowered or "query" in lowered:
        return '{"queries": []}'
    return ""


def answer_text(result: AgentResult, citations: list[CitationOut]) -> str:
    """The answer with its choice, rationale and a numbered sources list (markers [P1], [P2], ... as in the text)."""
    lines = []
    if result.evidence_only and not result.answer.lstrip().lower().startswith("evidence only"):
        lines.append("(Evidence only: no language model generated this answer; these are the best-matching textbook pages.)\n")
    lines.append(result.answer.strip())
    if result.choice and f"{result.choice}" not in result.answer[:3]:
        lines.append(f"\nChoice: {result.choice}" + (f" (confidence {result.confidence:.2f})" if result.confidence is not None else ""))
    if result.rationale:
        lines.append(f"\nRationale: {result.rationale.strip()}")
    if citations:
        lines.append("\nSources:")
        for citation in citations:
            page = citation.page_label or str(citation.page)
            section = f" ({citation.section})" if citation.section else ""
            link = f" [open page]({citation.link})" if citation.link else ""
            lines.append(f"[{citation.ref or '?'}] {citation.title}, p. {page}{section}{link}")
            if passage := _quoted(citation):
                lines.append(f"> {passage}\n")
            for n, figure in enumerate(citation.figures, start=1):
                name = f"Fig. {figure.number}" if figure.number else "Figure"
                matched = " (its figure closest to your image)" if n == citation.matched_figure else ""
                caption = f": {_shortened(figure.caption)}" if figure.caption else ""
                lines.append(f"- [{name}]({figure.link}) on this page{matched}{caption}")
    return "\n".join(lines)


def annotations(citations: list[CitationOut]) -> list[Annotation]:
    """The cited pages as OpenAI `url_citation` annotations (title as in the sources list, the signed link)."""
    return [
        Annotation(url_citation=UrlCitation(url=c.link, title=f"[{c.ref}] {c.title}, p. {c.page_label or c.page}"))
        for c in citations
        if c.link
    ]


def _quoted(citation: CitationOut) -> str:
    """The supporting passage on one line, short enough to read under its source (the snippet, with
    its words matching the question in bold, when that is the passage)."""
    shown = citation.snippet if snippet_text(citation.snippet) == citation.passage else citation.passage
    return _shortened(shown)


def _shortened(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _QUOTE_CHARS:
        text = text[:_QUOTE_CHARS].rsplit(" ", 1)[0] + " ..."
    return text


# --- streaming --------------------------------------------------------------------------------------


class StreamedAnswer:
    """The content of a streamed chat answer: the model's answer tokens as they come, then the rest.

    The tokens' leading whitespace and any trailing whitespace still unsent are held back, so that when
    the final answer text (`answer_text`) starts with the streamed answer, all that was sent adds up to
    exactly the non-streaming content. When it does not (the model failed after streaming began and the
    evidence answered instead), the complete answer text follows what was streamed, after a blank line.
    """

    def __init__(self) -> None:
        self.sent = ""
        self._held = ""

    def token(self, text: str) -> str:
        """The part of a token to send now ('' while only whitespace has come)."""
        text = self._held + text
        if not self.sent:
            text = text.lstrip()
        body = text.rstrip()
        self._held = text[len(body):]
        self.sent += body
        return body

    def rest(self, full: str) -> str:
        """What still has to be sent once the final answer text is known."""
        if full.startswith(self.sent):
            return full[len(self.sent):]
        return "\n\n" + full
