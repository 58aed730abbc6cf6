"""What the routes share, built once per app and kept on `app.state`, and the FastAPI dependencies
that hand it to them: `get_services`, the API key checks `require_user` / `require_admin`, and
`page_linker` (signed page links for a request's answers)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from agent import Agent
from rag.page_index import PageIndex
from server.auth import KeyChecker, Principal
from server.jobs import JobStore, JobWorker
from server.metrics import Metrics
from server.page_links import PageLinker, PageLinks
from server.runs import QuestionSlots
from server.settings import ServerSettings


class Services:
    """ServerSettings, index, agent, keys, question slots, jobs and metrics of one app."""

    def __init__(self, settings: ServerSettings, index: PageIndex | None) -> None:
        self.settings = settings
        self.keys = KeyChecker(settings)  # refuses to start without keys unless anonymous use is allowed
        self.owns_index = index is None
        self.index = index or PageIndex(settings)
        self.index.books()  # open the index now: one held by another process, read-only or on a full disk stops the start
        self.metrics = Metrics()
        self.agent = Agent(settings, self.index, observer=self.metrics.observer())
        self.question_slots = QuestionSlots(settings.max_questions_in_flight)
        self.jobs = JobStore(settings.data_dir / "server" / "jobs.sqlite")
        self.worker = JobWorker(
            self.jobs, self.index,
            on_pages=self.metrics.indexed_pages.inc,
            on_finished=self._job_finished,
        )
        self.page_links = PageLinks(settings)
        self.uploads_dir = settings.data_dir / "server" / "uploads"
        self.created = int(time.time())  # the model card's `created`

    def _job_finished(self, status: str) -> None:
        self.metrics.jobs_finished.labels(status).inc()
        self.metrics.jobs_queued.dec()

    def start(self) -> None:
        """At startup: count the jobs left from the last run and resume them."""
        self.metrics.jobs_queued.set(len(self.jobs.unfinished()))
        self.worker.start()

    def close(self) -> None:
        self.worker.stop()
        self.agent.close()
        self.jobs.close()
        if self.owns_index:
            self.index.close()


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def require_user(request: Request, services: ServicesDep) -> Principal:
    """Any valid API key (or none, where anonymous use is allowed); 401 otherwise."""
    return services.keys.check(request.headers.get("authorization"))


def require_admin(request: Request, services: ServicesDep) -> Principal:
    """An admin API key; 401 without a valid key, 403 with a user key."""
    return services.keys.check(request.headers.get("authorization"), admin=True)


def page_linker(request: Request, services: ServicesDep) -> PageLinker:
    """Signed page links for this request's answers (under PATHORAG_PUBLIC_URL, or the request's address)."""
    return services.page_links.linker(str(request.base_url))


User = Annotated[Principal, Depends(require_user)]
Linker = Annotated[PageLinker, Depends(page_linker)]
Admin = Annotated[Principal, Depends(require_admin)]
