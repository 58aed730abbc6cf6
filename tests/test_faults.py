"""Faults a hospital server meets, on real processes: the server killed mid-upload, a full disk, a
data directory that cannot be used or is held by another process. Each ends in a clear error or a
clean recovery, and no page is lost, duplicated or searchable half-way."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from indexer.jobs import book_id_of
from indexer.settings import IndexerSettings
from rag.page_index import PageIndex
from rag.search import SearchQuery, search_pages
from rag.store import StoreError
from tests.conftest import PATHOLOGY_PAGES, write_case_book

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": "Bearer fault-admin"}
BOOK_PAGES = 40

# `pathorag serve`, each page batch slowed down so that the test can kill it mid-book.
SLOW_SERVER = textwrap.dedent(
    """
    import sys, time
    from indexer import jobs

    encode = jobs.encode_pages

    def slow_encode(*args, **kwargs):
        time.sleep(0.4)
        return encode(*args, **kwargs)

    jobs.encode_pages = slow_encode
    from pathorag.cli import app

    app(["serve", "--port", sys.argv[1]])
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _long_book(path: Path) -> Path:
    return write_case_book(path, BOOK_PAGES)


class Served:
    """`pathorag serve` (or a driver script that runs it) as its own process group on a free port."""

    def __init__(self, command: list[str], env: dict, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*command, str(self.port)], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.log = log
        deadline = time.monotonic() + 120
        while True:
            assert self.process.poll() is None, f"the server exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the server did not start in 2 minutes"
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)

    def job(self, job_id: str) -> dict:
        return httpx.get(f"{self.url}/v1/jobs/{job_id}", headers=ADMIN, timeout=10).json()

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(60)


def _env(data_dir: Path) -> dict:
    return os.environ | {
        "PATHORAG_DATA_DIR": str(data_dir),
        "PATHORAG_PAGE_ENCODER": "none",
        "PATHORAG_OCR": "false",
        "PATHORAG_RENDER_DPI": "72",
        "PATHORAG_ADMIN_API_KEYS": "fault-admin",
        "HF_HUB_OFFLINE": "1",
    }


def test_server_killed_mid_upload_resumes_the_job_and_stores_each_page_once(tmp_path: Path, text_only_encoders) -> None:
    data_dir, pdf = tmp_path / "data", _long_book(tmp_path / "long.pdf")
    driver = tmp_path / "slow_server.py"
    driver.write_text(SLOW_SERVER)
    env = _env(data_dir)
    server = Served([sys.executable, str(driver)], env, tmp_path / "server.log")
    try:
        with pdf.open("rb") as file:
            reply = httpx.post(server.url + "/v1/books", headers=ADMIN, files={"file": ("long.pdf", file)}, timeout=30)
        assert reply.status_code == 202, reply.text
        job_id = reply.json()["job_id"]
        deadline = time.monotonic() + 120
        while (job := server.job(job_id))["pages_done"] < 8:
            assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
            time.sleep(0.1)
        server.kill()  # kill -9, wherever the worker is: extracting, encoding or storing
    finally:
        server.stop()

    settings = IndexerSettings(_env_file=None, data_dir=data_dir, page_encoder="none", ocr=False, render_dpi=72)
    book_id = book_id_of(pdf)
    index = PageIndex(settings, encoders=text_only_encoders)
    try:  # between the kill and the restart: some pages stored, nothing searchable
        stored = index.stored_pages(book_id)
        assert index.book(book_id).status == "indexing" and 0 < len(stored) < BOOK_PAGES
        assert search_pages(index, SearchQuery(text="Reed-Sternberg cells", books=[book_id])) == []
    finally:
        index.close()

    server = Served([str(Path(sys.executable).parent / "pathorag"), "serve", "--port"], env, tmp_path / "server.log")
    try:
        deadline = time.monotonic() + 180
        while (job := server.job(job_id))["status"] != "done":
            assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
            time.sleep(0.3)
        assert (job["book_id"], job["result"]) == (book_id, "indexed")
    finally:
        server.stop()

    index = PageIndex(settings, encoders=text_only_encoders)
    try:
        book = index.book(book_id)
        assert (book.status, book.page_count, book.failed_pages) == ("complete", BOOK_PAGES, [])
        assert index.count_pages(book_id) == BOOK_PAGES  # each page exactly once
        assert index.stored_pages(book_id) == set(range(1, BOOK_PAGES + 1))
        assert all(index.page(book_id, n).text.startswith(f"Case {n}.") for n in range(1, BOOK_PAGES + 1))
        assert search_pages(index, SearchQuery(text="Reed-Sternberg cells owl-eye nucleoli", top_k=3))
    finally:
        index.close()


# --- a full disk ---------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 512 MiB tmpfs: a disk that fills up (needs root to mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", str(mount)], capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path, leave_bytes: int) -> None:
    """Write zeros until the disk has about `leave_bytes` free (real blocks: tmpfs has no sparse writes)."""
    import shutil

    remaining = shutil.disk_usage(path.parent).free - leave_bytes
    chunk = b"\0" * 2**20
    with path.open("wb") as filler:
        while remaining > 0:
            filler.write(chunk[: min(len(chunk), remaining)])
            remaining -= len(chunk)


def test_a_full_disk_stops_indexing_with_the_reason_and_a_rerun_completes(small_disk: Path, tmp_path: Path, text_only_encoders) -> None:
    from indexer.jobs import PAGES_PER_BATCH, index_pdf
    from tests.conftest import write_pathology_book

    settings = IndexerSettings(
        _env_file=None, data_dir=small_disk / "data", page_encoder="none", ocr=False, render_dpi=72, min_free_disk_mb=200
    )
    index = PageIndex(settings, encoders=text_only_encoders)
    try:
        first = index_pdf(index, write_pathology_book(tmp_path / "essentials.pdf"))
        assert first.status == "indexed"
        pdf, filler = _long_book(tmp_path / "long.pdf"), small_disk / "filler"

        def fill_after_the_first_batch(done: int, total: int) -> None:
            if done == PAGES_PER_BATCH and not filler.exists():
                _fill(filler, leave_bytes=150 * 2**20)  # under the margin, enough to reopen

        stopped = index_pdf(index, pdf, progress=fill_after_the_first_batch)

        assert (stopped.status, stopped.retryable) == ("failed", True)
        assert stopped.error.startswith("long.pdf: the disk of the data directory") and "MiB free" in stopped.error
        assert f"{PAGES_PER_BATCH} of {BOOK_PAGES} pages are stored" in stopped.error
        assert index.book(stopped.book_id).status == "indexing"  # hidden, as any interrupted book
        assert index.stored_pages(stopped.book_id) == set(range(1, PAGES_PER_BATCH + 1))
        other = index_pdf(index, write_pathology_book(tmp_path / "atlas.pdf", title="Atlas"))  # a new book: not begun
        assert (other.status, other.retryable) == ("failed", True) and "nothing was written" in other.error
        assert index.book(other.book_id) is None
    finally:
        index.close()

    index = PageIndex(settings, encoders=text_only_encoders)  # the index opens and searches
    try:
        hits = search_pages(index, SearchQuery(text="Reed-Sternberg cells", top_k=3))
        assert hits and {hit.book_id for hit in hits} == {first.book_id}
        filler.unlink()  # space freed
        _fill(filler, leave_bytes=32 * 2**20)  # ... then almost none: the store refuses to open, with the reason
        with pytest.raises(StoreError, match=r"has \d+ MiB free; the embedded engine needs at least 64 MiB"):
            PageIndex(settings, encoders=text_only_encoders).books()
        filler.unlink()
        resumed = index_pdf(index, pdf)
        assert (resumed.status, resumed.pages_indexed) == ("indexed", BOOK_PAGES - PAGES_PER_BATCH)
        assert index.count_pages(resumed.book_id) == BOOK_PAGES
        assert index.stored_pages(resumed.book_id) == set(range(1, BOOK_PAGES + 1))
    finally:
        index.close()


# --- data directories that cannot be used ----------------------------------------------------------


def _pathorag(*args: str, env: dict) -> subprocess.CompletedProcess:
    """A `pathorag` command; its stderr with the console's line wrapping undone."""
    result = subprocess.run([str(Path(sys.executable).parent / "pathorag"), *args], env=env, capture_output=True, text=True, timeout=300)
    result.stderr = " ".join(result.stderr.split())
    return result


def _indexed_library(data_dir: Path, pdf: Path, text_only_encoders) -> str:
    from indexer.jobs import index_pdf

    settings = IndexerSettings(_env_file=None, data_dir=data_dir, page_encoder="none", ocr=False, render_dpi=72)
    index = PageIndex(settings, encoders=text_only_encoders)
    try:
        report = index_pdf(index, pdf)
        assert report.status == "indexed"
        return report.book_id
    finally:
        index.close()


def test_a_second_process_is_refused_while_the_server_holds_the_index(tmp_path: Path, text_only_encoders) -> None:
    from tests.conftest import write_pathology_book

    data_dir = tmp_path / "data"
    book_id = _indexed_library(data_dir, write_pathology_book(tmp_path / "essentials.pdf"), text_only_encoders)
    env = _env(data_dir)
    server = Served([str(Path(sys.executable).parent / "pathorag"), "serve", "--port"], env, tmp_path / "server.log")
    try:
        assert httpx.get(server.url + "/v1/books", headers=ADMIN, timeout=30).status_code == 200
        second = _pathorag("index", "add", str(_long_book(tmp_path / "long.pdf")), env=env)
        assert second.returncode == 2, second.stderr
        assert "is open in another process" in second.stderr and str(data_dir / "index") in second.stderr
        assert "Traceback" not in second.stderr
        second_server = _pathorag("serve", "--port", str(_free_port()), env=env)  # another server: it will not start
        assert second_server.returncode == 2 and "is open in another process" in second_server.stderr, second_server.stderr
        books = httpx.get(server.url + "/v1/books", headers=ADMIN, timeout=30).json()["books"]
        assert [(b["book_id"], b["status"]) for b in books] == [(book_id, "complete")]  # the server goes on
    finally:
        server.stop()
    listed = _pathorag("index", "list", "--json", env=env)  # the lock went with the server
    assert listed.returncode == 0, listed.stderr
    assert [(b["book_id"], b["pages_indexed"]) for b in json.loads(listed.stdout)] == [(book_id, len(PATHOLOGY_PAGES))]


def test_an_unusable_data_dir_fails_with_the_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = _pathorag("index", "list", env=_env(blocker / "data"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"Cannot open the index at {blocker / 'data' / 'index'}: Not a directory" in result.stderr


def test_a_read_only_data_dir_fails_with_the_reason_and_loses_nothing(small_disk: Path, tmp_path: Path, text_only_encoders) -> None:
    from tests.conftest import write_pathology_book

    data_dir = small_disk / "data"
    book_id = _indexed_library(data_dir, write_pathology_book(tmp_path / "essentials.pdf"), text_only_encoders)
    env = _env(data_dir)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        listed = _pathorag("index", "list", env=env)
        assert listed.returncode == 2 and "Traceback" not in listed.stderr, listed.stderr
        assert "Read-only file system" in listed.stderr and str(data_dir / "index") in listed.stderr
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    listed = _pathorag("index", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [(b["book_id"], b["status"]) for b in json.loads(listed.stdout)] == [(book_id, "complete")]


# --- a request body that never ends ----------------------------------------------------------------


def test_a_stalled_upload_is_answered_408_and_the_server_goes_on(tmp_path: Path, text_only_encoders) -> None:
    from tests.test_server import ADMIN as SERVER_ADMIN, server_settings, start_server

    settings = server_settings(tmp_path / "data").model_copy(update={"request_body_timeout_s": 1.0})
    index = PageIndex(settings, encoders=text_only_encoders)
    url, stop = start_server(settings, index)
    try:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            head = (f"POST /v1/books HTTP/1.1\r\nHost: x\r\nAuthorization: {SERVER_ADMIN['Authorization']}\r\n"
                    "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n")
            sock.sendall(head.encode() + b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.pdf"\r\n\r\n%PDF-1.7')
            started = time.monotonic()
            chunks = []  # ... and nothing more is sent; the server answers and closes the connection
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            waited = time.monotonic() - started
        answer = b"".join(chunks).decode()
        assert answer.startswith("HTTP/1.1 408"), answer
        assert '"type":"timeout"' in answer.replace(" ", "") and "request_body_timeout_s" in answer
        assert 0.9 < waited < 10
        assert httpx.get(url + "/v1/books", headers=SERVER_ADMIN, timeout=10).json()["books"] == []  # nothing half-added
        assert not any((settings.data_dir / "server" / "uploads").glob("*/*"))
    finally:
        stop()
        index.close()
