"""Prometheus metrics of one app (own registry, so several apps in one process do not clash)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.indexed_pages = Counter("pathorag_indexed_pages", "Pages indexed by background jobs.", registry=self.registry)
        self.jobs_finished = Counter("pathorag_index_jobs", "Indexing jobs finished, by outcome.", ["status"], registry=self.registry)
        self.jobs_queued = Gauge("pathorag_index_jobs_pending", "Indexing jobs queued or running.", registry=self.registry)
