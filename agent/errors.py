"""Errors the agent raises to its callers; every other fault ends in a result with a warning."""

from __future__ import annotations


class AgentInputError(ValueError):
    """The question, its images, choices or filters cannot be used (the message says why)."""


class AgentConfigError(ValueError):
    """The agent's settings contradict each other (the message names the settings)."""
