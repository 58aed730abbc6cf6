"""The pathology question-answering agent (LangGraph): route, retrieve, inspect, reflect, answer."""

from agent.api import Agent
from agent.errors import AgentConfigError, AgentInputError
from agent.images import ImageInputError
from agent.state import AgentResult, Citation, ResultEvent, StreamEvent, TraceEvent

__all__ = [
    "Agent",
    "AgentConfigError",
    "AgentInputError",
    "AgentResult",
    "Citation",
    "ImageInputError",
    "ResultEvent",
    "StreamEvent",
    "TraceEvent",
]
