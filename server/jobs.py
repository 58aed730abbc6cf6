"""Background indexing jobs: records in SQLite under data_dir, one worker thread, resumed after a restart.

A job record is written before the upload is acknowledged. On start every job still `queued` or
`running` is queued again: `index_pdf` skips the pages already stored, and a book is searchable only
once complete, so an interrupted job never leaves a half-indexed book visible. Stopping the worker
interrupts the job at its next page batch; it stays `running` on disk and resumes on the next start.
A job that fails for a reason outside its book (the page-encoder service down or failing) goes back
to `queued` with the reason and is tried again after a delay that doubles up to 15 minutes.
"""

from __future__ import annotations

import logging
import queue
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from indexer.jobs import BookMeta, index_pdf
from rag.page_index import PageIndex
from server.protocol import JobOut

log = logging.getLogger(__name__)
_MAX_RETRY_DELAY_S = 900.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    file_name TEXT NOT NULL,
    path TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    book_id TEXT NOT NULL DEFAULT '',
    pages_done INTEGER NOT NULL DEFAULT 0,
    pages_total INTEGER NOT NULL DEFAULT 0,
    result TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""


class _Stopped(Exception):
    """Raised inside a job's progress callback when the worker is asked to stop."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class JobStore:
    """Job records in one SQLite file; safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)

    def create(self, file_name: str, path: Path, meta_json: str = "{}", job_id: str | None = None) -> JobOut:
        job_id = job_id or uuid.uuid4().hex
        now = _now()
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (job_id, status, file_name, path, meta, created_at, updated_at) VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                (job_id, file_name, str(path), meta_json, now, now),
            )
        return self.get(job_id)

    def update(self, job_id: str, **fields) -> None:
        fields["updated_at"] = _now()
        names = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {names} WHERE job_id = ?", (*fields.values(), job_id))

    def row(self, job_id: str) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()

    def get(self, job_id: str) -> JobOut | None:
        row = self.row(job_id)
        return _job_out(row) if row is not None else None

    def unfinished(self) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_at"
            ).fetchall()
        return [row["job_id"] for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _job_out(row: sqlite3.Row) -> JobOut:
    total = row["pages_total"]
    return JobOut(
        job_id=row["job_id"],
        status=row["status"],
        file_name=row["file_name"],
        book_id=row["book_id"],
        pages_done=row["pages_done"],
        pages_total=total,
        progress=round(min(1.0, row["pages_done"] / total), 4) if total else (1.0 if row["status"] == "done" else 0.0),
        result=row["result"],
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class JobWorker:
    """One thread that indexes queued jobs one at a time (the embedded engine is single-process)."""

    def __init__(
        self,
        store: JobStore,
        index: PageIndex,
        on_pages: Callable[[int], None] = lambda n: None,
        on_finished: Callable[[str], None] = lambda status: None,
        retry_after_s: float = 30.0,
    ) -> None:
        self.store = store
        self.index = index
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pathorag-indexer", daemon=True)
        self._on_pages = on_pages
        self._on_finished = on_finished
        self._retry_after_s = retry_after_s
        self._retries: dict[str, int] = {}  # job id -> retries so far (in memory: a restart retries at once)
        self.current: str | None = None

    def start(self) -> None:
        for job_id in self.store.unfinished():
            log.info("resuming indexing job %s", job_id)
            self._queue.put(job_id)
        self._thread.start()

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current page batch; an interrupted job resumes on the next start."""
        self._stop.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            job_id = self._queue.get()
            if job_id is None or self._stop.is_set():
                return
            try:
                self._run(job_id)
            except _Stopped:
                log.info("indexing job %s interrupted; it resumes on the next start", job_id)
                return
            except Exception as error:  # a bug in indexing must not kill the worker
                log.exception("indexing job %s failed", job_id)
                self.store.update(job_id, status="failed", error=f"internal error ({type(error).__name__})")
                self._on_finished("failed")
            finally:
                self.current = None

    def _run(self, job_id: str) -> None:
        row = self.store.row(job_id)
        if row is None or row["status"] not in ("queued", "running"):
            return
        self.current = job_id
        path = Path(row["path"])
        meta = BookMeta(**_load_meta(row["meta"]))
        self.store.update(job_id, status="running")
        last = {"done": 0, "at": 0.0}

        def progress(done: int, total: int) -> None:
            if self._stop.is_set():
                raise _Stopped
            if done > last["done"]:
                self._on_pages(done - last["done"])
            last["done"] = done
            now = time.monotonic()
            if now - last["at"] > 0.5 or done >= total:
                last["at"] = now
                self.store.update(job_id, pages_done=done, pages_total=total)

        report = index_pdf(self.index, path, meta, progress)
        if report.status == "failed" and report.retryable:
            self._retry_later(job_id, report.error)
            return
        self._retries.pop(job_id, None)
        if report.status == "failed":
            self.store.update(job_id, status="failed", error=report.error, book_id=report.book_id)
            self._on_finished("failed")
        else:
            errors = "; ".join(str(e) for e in report.page_errors)
            self.store.update(
                job_id, status="done", result=report.status, book_id=report.book_id, error=errors,
                pages_done=max(last["done"], row["pages_total"]),
            )
            self._on_finished("done")
        shutil.rmtree(path.parent, ignore_errors=True)  # the upload; index_pdf keeps its own copy

    def _retry_later(self, job_id: str, error: str) -> None:
        retries = self._retries[job_id] = self._retries.get(job_id, 0) + 1
        delay = min(_MAX_RETRY_DELAY_S, self._retry_after_s * 2 ** (retries - 1))
        log.warning("indexing job %s: %s; retrying in %.0f s", job_id, error, delay)
        self.store.update(job_id, status="queued", error=f"{error}; retrying in {delay:.0f} s")
        timer = threading.Timer(delay, self._queue.put, args=(job_id,))
        timer.daemon = True
        timer.start()


def _load_meta(text: str) -> dict:
    import json

    try:
        meta = json.loads(text or "{}")
    except ValueError:
        return {}
    allowed = {"title", "edition", "license", "organ_systems"}
    return {key: value for key, value in meta.items() if key in allowed} if isinstance(meta, dict) else {}
