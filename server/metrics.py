"""Prometheus metrics of one app (own registry, so several apps in one process do not clash).

The agent reports model calls and searches through an `agent.Observer` built by `observer()`; its
callbacks run in the agent's worker threads (prometheus_client's metrics are thread-safe).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agent.api import Observer
from agent.state import SearchEvent
from agent.vlm import ModelCall

_MODEL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
_SEARCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "pathorag_http_request_seconds", "HTTP request latency by route.", ["method", "route", "status"],
            registry=self.registry,
        )
        self.agent_seconds = Histogram(
            "pathorag_agent_seconds", "Time to answer one question (search and VLM).", ["evidence_only"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300), registry=self.registry,
        )
        self.agent_runs = Gauge(
            "pathorag_agent_runs_in_progress", "Questions the agent is working on (worker threads busy).",
            registry=self.registry,
        )
        self.agent_stopped = Counter(
            "pathorag_agent_stopped", "Questions stopped before their answer, by reason (timeout, disconnect).",
            ["reason"], registry=self.registry,
        )
        self.search_seconds = Histogram(
            "pathorag_search_seconds", "Latency of one agent search (all channels, fused and reranked), by outcome.",
            ["outcome"], buckets=_SEARCH_BUCKETS, registry=self.registry,
        )
        self.model_call_seconds = Histogram(
            "pathorag_model_call_seconds",
            "Latency of one call to a model, by role (router, answerer) and outcome "
            "(ok, invalid, refused, timeout, unavailable).",
            ["role", "outcome"], buckets=_MODEL_BUCKETS, registry=self.registry,
        )
        self.model_tokens = Counter(
            "pathorag_model_tokens", "Tokens of model calls, by role and kind (prompt, completion).", ["role", "kind"],
            registry=self.registry,
        )
        self.indexed_pages = Counter("pathorag_indexed_pages", "Pages indexed by background jobs.", registry=self.registry)
        self.jobs_finished = Counter("pathorag_index_jobs", "Indexing jobs finished, by outcome.", ["status"], registry=self.registry)
        self.jobs_queued = Gauge("pathorag_index_jobs_pending", "Indexing jobs queued or running.", registry=self.registry)

    def model_call(self, call: ModelCall) -> None:
        self.model_call_seconds.labels(call.role, call.outcome).observe(call.seconds)
        if call.prompt_tokens:
            self.model_tokens.labels(call.role, "prompt").inc(call.prompt_tokens)
        if call.completion_tokens:
            self.model_tokens.labels(call.role, "completion").inc(call.completion_tokens)

    def search(self, event: SearchEvent) -> None:
        self.search_seconds.labels("error" if event.error else "ok").observe(event.seconds)

    def observer(self) -> Observer:
        return Observer(on_model_call=self.model_call, on_search=self.search)
