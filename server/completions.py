"""Serving /v1/chat/completions: one ChatCompletion, or the same answer as a stream of
chat.completion.chunk events (role, progress and content, then finish, usage if asked, [DONE])."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator

from sse_starlette.sse import EventSourceResponse

from agent import ResultEvent
from agent.api import AgentStopped
from agent.state import AgentResult, AnswerTokenEvent
from agent.trace import describe_event
from server import results
from server.chat import StreamedAnswer, annotations, answer_text, chat_question, task_reply
from server.images import images_bytes
from server.page_links import PageLinker
from server.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChunkChoice,
    CitationOut,
    UsageOut,
    event_json,
)
from server.dependencies import Services
from server.runs import StreamedRun, answer, start_stream

log = logging.getLogger(__name__)

_CONTENT_PIECE = 200  # the answer text after the streamed tokens goes in pieces of this many characters


async def complete(services: Services, body: ChatCompletionRequest, link: PageLinker) -> ChatCompletion | EventSourceResponse:
    settings = services.settings
    chunks = _Chunks(settings.server_model_name, body)
    asked = chat_question(body, settings.agent_max_question_chars)
    if asked.task is not None:  # a chat front-end's title/tag request: no retrieval
        text = task_reply(asked.task)
        if body.stream:
            return EventSourceResponse(_task_stream(chunks, text))
        return _completion(chunks, text, [], UsageOut())
    run_args = dict(question=asked.question, images=await images_bytes(asked.images, settings, note=""))
    if body.stream:
        return EventSourceResponse(_answer_stream(chunks, await start_stream(services, run_args), link))
    result = await answer(services, run_args)
    citations = results.citations(result, link)
    return _completion(chunks, answer_text(result, citations), citations, results.usage(result))


def _completion(chunks: _Chunks, text: str, citations: list[CitationOut], usage: UsageOut) -> ChatCompletion:
    return ChatCompletion(
        id=chunks.id, created=int(time.time()), model=chunks.model,
        choices=[ChatChoice(message=AssistantMessage(content=text, annotations=annotations(citations)))],
        usage=usage, citations=citations,
    )


class _Chunks:
    """The `data:` events of one streamed completion."""

    def __init__(self, model: str, body: ChatCompletionRequest) -> None:
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.model = model
        self.include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def _event(self, choices: list[ChunkChoice], **extra) -> dict:
        chunk = ChatCompletionChunk(id=self.id, created=int(time.time()), model=self.model, choices=choices, **extra)
        return {"data": event_json(chunk)}

    def delta(self, **delta) -> dict:
        return self._event([ChunkChoice(delta=ChatDelta(**delta))])

    def head(self) -> dict:
        return self.delta(role="assistant", content="")

    def content(self, text: str) -> Iterator[dict]:
        for start in range(0, len(text), _CONTENT_PIECE):  # a few chunks, as clients expect a stream
            yield self.delta(content=text[start:start + _CONTENT_PIECE])

    def tail(self, citations: list[CitationOut], usage: UsageOut) -> Iterator[dict]:
        """The finishing chunk (with the citations, if any), the usage chunk if asked for, and [DONE]."""
        delta = ChatDelta(annotations=annotations(citations) or None)
        yield self._event([ChunkChoice(delta=delta, finish_reason="stop")], citations=citations or None)
        if self.include_usage:
            yield self._event([], usage=usage)
        yield {"data": "[DONE]"}


async def _task_stream(chunks: _Chunks, text: str) -> AsyncIterator[dict]:
    yield chunks.head()
    for event in (*chunks.content(text), *chunks.tail([], UsageOut())):
        yield event


async def _answer_stream(chunks: _Chunks, run: StreamedRun, link: PageLinker) -> AsyncIterator[dict]:
    """The agent's progress as `reasoning_content` lines (shown by chat front ends as thinking, ignored by
    plain clients), the answer's tokens as `content` as the model writes them, then the rest of the answer
    text (choice, rationale, sources): the content adds up to the non-streaming reply's (see StreamedAnswer)."""
    yield chunks.head()
    answer_so_far = StreamedAnswer()
    result: AgentResult | None = None
    failure = ""
    try:
        async for event in run.events():
            if isinstance(event, ResultEvent):
                result = event.result
            elif isinstance(event, AnswerTokenEvent):
                if text := answer_so_far.token(event.text):
                    yield chunks.delta(content=text)
            elif line := describe_event(event):
                yield chunks.delta(reasoning_content=line + "\n")
    except AgentStopped:
        failure = "\n(time limit reached)"
    except Exception as error:
        log.error("chat stream failed: %s", type(error).__name__, exc_info=error)
        failure = "\n(internal server error)"
    finally:
        run.end()
    if result is None:
        rest, citations, usage = failure or "(no answer)", [], UsageOut()
    else:
        citations, usage = results.citations(result, link), results.usage(result)
        rest = answer_so_far.rest(answer_text(result, citations))
    for event in (*chunks.content(rest), *chunks.tail(citations, usage)):
        yield event
