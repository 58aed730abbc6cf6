"""Structured chat with an OpenAI-compatible (vision-)language model through the official `openai` client.

Replies are asked for with `response_format={"type": "json_schema", ...}`, then parsed tolerantly
(code fences, prose around the object) and validated with the pydantic model the schema came from.
A server that ignores the schema gets one repair turn; after that the call fails with
`VLMInvalidResponse`. Transport faults surface as `VLMUnavailable` (or its `VLMTimeout`) after the
client's own retries with backoff. A semaphore shared by all questions bounds calls in flight.
Each HTTP call is reported, when an `on_call` callback is given, as a `ModelCall` (role, outcome,
seconds, tokens) for metrics. With `on_text`, the first attempt is streamed and the callback sees the
reply's text so far after every chunk (live answer tokens); the parsed reply is still what counts.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import openai
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)
Reply = TypeVar("Reply", bound=BaseModel)

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_REPAIR = (
    "Your reply could not be used: {error}. Reply again with only one JSON object that follows the "
    "schema {name!r}, with no other text."
)


class VLMError(RuntimeError):
    """A model call that gave no usable reply."""


class VLMUnavailable(VLMError):
    """The endpoint could not be reached or refused the request."""


class VLMTimeout(VLMUnavailable):
    """The endpoint did not answer within the time allowed."""


class VLMInvalidResponse(VLMError):
    """The reply was not JSON that follows the schema, even after one repair turn."""


class VLMRefusal(VLMError):
    """The model declined to answer."""


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str


@dataclass(frozen=True)
class ModelCall:
    """One HTTP call to a model, as reported to `ChatModel`'s `on_call` callback (metrics)."""

    role: str  # "router" or "answerer"
    model: str
    outcome: str  # "ok", "invalid" (the reply did not parse), "refused", "timeout" or "unavailable"
    seconds: float
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _outcome(error: VLMError) -> str:
    if isinstance(error, VLMTimeout):
        return "timeout"
    if isinstance(error, VLMUnavailable):
        return "unavailable"
    if isinstance(error, VLMRefusal):
        return "refused"
    return "invalid"


@dataclass(frozen=True)
class Parsed(Generic[Reply]):
    value: Reply
    prompt_tokens: int
    completion_tokens: int


class ChatModel:
    """One model on one endpoint."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout_s: float,
        max_retries: int,
        temperature: float,
        max_output_tokens: int,
        slots: threading.BoundedSemaphore,
        log_content: bool = False,
        role: str = "answerer",
        on_call: Callable[[ModelCall], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.role = role
        self._on_call = on_call
        self.timeout_s = timeout_s
        self.temperature = temperature
        self.max_output_tokens = max_output_tokens
        self._slots = slots
        self._log_content = log_content
        self._client = openai.OpenAI(
            base_url=endpoint.base_url, api_key=endpoint.api_key, timeout=timeout_s, max_retries=max_retries
        )

    def close(self) -> None:
        self._client.close()

    def chat(
        self,
        messages: list[dict],
        reply_type: type[Reply],
        deadline: float | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Parsed[Reply]:
        """Ask for a reply of `reply_type`; one repair turn when the first reply does not parse."""
        name = reply_type.__name__
        schema = {"type": "json_schema", "json_schema": {"name": name, "schema": reply_type.model_json_schema()}}
        prompt_tokens = completion_tokens = 0
        for attempt in range(2):
            started = time.monotonic()
            try:
                content, usage = self._complete(messages, schema, deadline, on_text if attempt == 0 else None)
            except VLMError as error:
                self._report(_outcome(error), started, (0, 0))
                raise
            prompt_tokens += usage[0]
            completion_tokens += usage[1]
            try:
                value = reply_type.model_validate(extract_json(content))
                self._report("ok", started, usage)
                return Parsed(value, prompt_tokens, completion_tokens)
            except (ValueError, ValidationError) as error:
                self._report("invalid", started, usage)
                problem = _describe(error)
                log.warning("%s reply from %s did not parse (attempt %d): %s", name, self.endpoint.model, attempt + 1, problem)
                messages = [
                    *messages,
                    {"role": "assistant", "content": content},
                    {"role": "user", "content": _REPAIR.format(error=problem, name=name)},
                ]
        raise VLMInvalidResponse(f"{self.endpoint.model} did not return a valid {name} JSON object ({problem})")

    def _report(self, outcome: str, started: float, usage: tuple[int, int]) -> None:
        if self._on_call is None:
            return
        call = ModelCall(self.role, self.endpoint.model, outcome, time.monotonic() - started, *usage)
        try:
            self._on_call(call)
        except Exception:  # a metrics fault must not fail the question
            log.exception("the model-call callback failed")

    def _complete(
        self, messages: list[dict], schema: dict, deadline: float | None, on_text: Callable[[str], None] | None
    ) -> tuple[str, tuple[int, int]]:
        timeout = self.timeout_s
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                raise VLMTimeout("the time budget of this question is spent")
        if not self._slots.acquire(timeout=timeout):
            raise VLMTimeout(f"no free model slot within {timeout:.0f} s (vlm_concurrency)")
        started = time.monotonic()
        request = dict(
            model=self.endpoint.model,
            messages=messages,
            response_format=schema,
            temperature=self.temperature,
            max_tokens=self.max_output_tokens,
            timeout=timeout,
        )
        try:
            if on_text is None:
                content, refusal, finish, usage = _reply(self._client.chat.completions.create(**request))
            else:
                stream = self._client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True})
                content, refusal, finish, usage = _streamed_reply(stream, on_text, started + timeout)
        except openai.APITimeoutError:
            raise VLMTimeout(f"{self.endpoint.model} at {self.endpoint.base_url} did not answer within {timeout:.0f} s") from None
        except openai.APIConnectionError as error:
            raise VLMUnavailable(f"cannot reach {self.endpoint.base_url} ({error.__cause__ or error})") from None
        except openai.APIStatusError as error:
            raise VLMUnavailable(
                f"{self.endpoint.base_url} refused the request: HTTP {error.status_code} {_short(error.message)}"
            ) from None
        finally:
            self._slots.release()
        if refusal or finish == "content_filter":
            raise VLMRefusal(f"{self.endpoint.model} declined to answer: {_short(refusal or 'content filter')}")
        log.debug(
            "%s: %.2f s, %d prompt + %d completion tokens", self.endpoint.model, time.monotonic() - started, *usage
        )
        if self._log_content:
            log.info("%s replied: %s", self.endpoint.model, content)
        return content, usage


def _tokens(usage) -> tuple[int, int]:
    return (usage.prompt_tokens or 0, usage.completion_tokens or 0) if usage else (0, 0)


def _reply(response) -> tuple[str, str | None, str | None, tuple[int, int]]:
    """(content, refusal, finish reason, token usage) of a whole response."""
    if not response.choices:
        raise VLMInvalidResponse("the model returned no choices")
    choice = response.choices[0]
    message = choice.message
    return message.content or "", getattr(message, "refusal", None), choice.finish_reason, _tokens(response.usage)


def _streamed_reply(
    stream, on_text: Callable[[str], None], ends_at: float
) -> tuple[str, str | None, str | None, tuple[int, int]]:
    """The same from a stream of chunks, calling `on_text` with the text so far as it grows.

    The HTTP client's timeout bounds each read only; `ends_at` (time.monotonic()) bounds the whole reply,
    so that a model that keeps writing cannot outlast the question's time limit."""
    content, refusal, finish, usage = "", "", None, (0, 0)
    with stream:
        for chunk in stream:
            if time.monotonic() > ends_at:
                raise VLMTimeout("the model was still writing when the time allowed for the call ran out")
            if chunk.usage:
                usage = _tokens(chunk.usage)
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            finish = choice.finish_reason or finish
            refusal += getattr(choice.delta, "refusal", None) or ""
            if choice.delta.content:
                content += choice.delta.content
                on_text(content)
    return content, refusal or None, finish, usage


def extract_json(text: str) -> dict:
    """The JSON object in a reply: the whole text, a fenced block, or the first object inside prose."""
    candidates = [text.strip(), *(block.strip() for block in _FENCE.findall(text))]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("no JSON object in the reply")


def _describe(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the object"
        return f"{where}: {first['msg']}"
    return str(error)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
