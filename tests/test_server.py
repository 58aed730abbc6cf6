"""The HTTP server, started with uvicorn on a loopback port, in evidence-only mode over a small real index."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from indexer.jobs import BookMeta, index_pdf
from rag.page_index import PageIndex
from server.settings import ServerSettings
from tests.conftest import write_pathology_book

pytestmark = pytest.mark.slow

USER = {"Authorization": "Bearer user-key"}
ADMIN = {"Authorization": "Bearer admin-key"}


@dataclass
class LiveServer:
    url: str
    settings: ServerSettings
    book_id: str
    root: Path


def server_settings(data_dir: Path, **overrides) -> ServerSettings:
    base = dict(
        _env_file=None, data_dir=data_dir, page_encoder="none", ocr=False, render_dpi=72,
        api_keys="user-key", admin_api_keys="admin-key", max_request_bytes=2_000_000, page_link_secret="link-secret",
        agent_max_image_decoded_pixels=4_000_000,
    )
    return ServerSettings(**(base | overrides))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(settings: ServerSettings, index: PageIndex):
    """uvicorn in a thread; returns (url, stop)."""
    import uvicorn

    from server.app import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, index), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(30)

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, text_only_encoders):
    root = tmp_path_factory.mktemp("server")
    settings = server_settings(root / "data")
    index = PageIndex(settings, encoders=text_only_encoders)
    report = index_pdf(index, write_pathology_book(root / "essentials.pdf"), BookMeta(organ_systems=["general"]))
    assert report.ok
    url, stop = start_server(settings, index)
    yield LiveServer(url, settings, report.book_id, root)
    stop()
    index.close()


def png_data_url(size=(32, 32)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 180)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_health_ready_and_metrics(live_server):
    assert httpx.get(live_server.url + "/healthz").json()["status"] == "ok"
    ready = httpx.get(live_server.url + "/readyz")
    assert ready.status_code == 200 and "evidence-only" in ready.json()["checks"]["vlm"]
    httpx.get(live_server.url + "/v1/models", headers=USER)
    metrics = httpx.get(live_server.url + "/metrics").text
    assert "pathorag_http_request_seconds_bucket" in metrics and 'route="/v1/models"' in metrics


def test_ask_json_cites_pages_that_are_served(live_server):
    reply = httpx.post(
        live_server.url + "/v1/ask", headers=USER, timeout=120,
        json={"question": "Which cells are characteristic of Hodgkin lymphoma?", "images": [png_data_url()],
              "choices": ["Reed-Sternberg cells", "Langhans giant cells", "Keratin pearls"]},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["evidence_only"] is True and body["citations"]
    top = body["citations"][0]
    assert top["book_id"] == live_server.book_id and top["image_url"] == f"/v1/pages/{top['book_id']}/{top['page']}"
    assert any(c["page_label"] == "102" for c in body["citations"])
    page = httpx.get(live_server.url + top["image_url"], headers=USER)
    assert page.status_code == 200 and page.headers["content-type"] == "image/webp"
    full = Image.open(io.BytesIO(page.content))
    thumb = Image.open(io.BytesIO(httpx.get(live_server.url + top["image_url"] + "?size=thumb", headers=USER).content))
    assert max(thumb.size) <= 256 and max(thumb.size) < max(full.size)
    small = Image.open(io.BytesIO(httpx.get(live_server.url + top["image_url"] + "?size=64", headers=USER).content))
    assert max(small.size) <= 64


def test_ask_multipart_with_image_file(live_server):
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (10, 200, 30)).save(buffer, format="PNG")
    reply = httpx.post(
        live_server.url + "/v1/ask", headers=USER, timeout=120,
        data={"question": "What is caseous necrosis?"}, files={"images": ("slide.png", buffer.getvalue(), "image/png")},
    )
    assert reply.status_code == 200, reply.text
    assert any(c["page_label"] == "103" for c in reply.json()["citations"])


def test_ask_stream_sends_events_then_result(live_server):
    events = []
    with httpx.stream("POST", live_server.url + "/v1/ask", headers=USER, timeout=120,
                      json={"question": "What does cirrhosis of the liver look like?", "stream": True}) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in reply.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
    names = [name for name, _ in events]
    assert names[0] == "route" and "search" in names and names[-1] == "result"
    assert events[-1][1]["citations"]


def test_auth_errors(live_server):
    url = live_server.url + "/v1/ask"
    missing = httpx.post(url, json={"question": "x"})
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    assert httpx.post(url, json={"question": "x"}, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.get(live_server.url + "/v1/books", headers={"Authorization": "Basic abc"}).status_code == 401
    pdf = write_pathology_book(live_server.root / "other.pdf").read_bytes()
    denied = httpx.post(live_server.url + "/v1/books", headers=USER, files={"file": ("other.pdf", pdf, "application/pdf")})
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "permission_error"
    assert httpx.delete(live_server.url + f"/v1/books/{live_server.book_id}", headers=USER).status_code == 403


def test_bad_input_is_a_json_4xx(live_server):
    url = live_server.url + "/v1/ask"
    empty = httpx.post(url, headers=USER, json={"question": "  "})
    assert empty.status_code == 422 and "empty" in empty.json()["error"]["message"]
    assert httpx.post(url, headers=USER, content=b"{not json", timeout=30).status_code in (400, 422)
    unknown_book = httpx.post(url, headers=USER, json={"question": "granuloma", "books": ["0" * 24]})
    assert unknown_book.status_code == 422
    too_big = httpx.post(url, headers=USER, json={"question": "x" * 3_000_000})
    assert too_big.status_code == 413 and too_big.json()["error"]["type"] == "request_too_large"
    # decompression bomb: a small PNG file that decodes to far more pixels than allowed
    buffer = io.BytesIO()
    Image.new("1", (5000, 5000)).save(buffer, format="PNG")
    bomb = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    assert len(bomb) < 100_000
    refused = httpx.post(url, headers=USER, json={"question": "what is this?", "images": [bomb]})
    assert refused.status_code == 413 and "pixels" in refused.json()["error"]["message"]
    remote = httpx.post(url, headers=USER, json={"question": "what is this?", "images": ["http://169.254.169.254/x.png"]})
    assert remote.status_code == 422 and "remote image URLs are refused" in remote.json()["error"]["message"]
    not_image = httpx.post(url, headers=USER, json={"question": "what?", "images": ["data:image/png;base64,aGVsbG8="]})
    assert not_image.status_code == 422
    for reply in (empty, unknown_book, refused, remote):
        assert "Traceback" not in reply.text


@pytest.mark.parametrize(
    "path",
    [
        "/v1/pages/..%2F..%2Fetc%2Fpasswd/1",
        "/v1/pages/../../etc/passwd",
        "/v1/pages/%2e%2e/1",
        "/v1/pages/BOOK/1",
        "/v1/pages/{book}/999",
        "/v1/pages/{book}/0",
        "/v1/pages/{book}/1?size=..%2F..",
        "/v1/jobs/..%2F..%2Fjobs.sqlite",
        "/v1/books/..%2Fbooks",
    ],
)
def test_path_traversal_is_refused(live_server, path):
    reply = httpx.request("DELETE" if path.startswith("/v1/books") else "GET",
                          live_server.url + path.format(book=live_server.book_id), headers=ADMIN)
    assert reply.status_code in (400, 403, 404, 405, 422), reply.text
    if reply.headers.get("content-type", "").startswith("application/json"):
        assert "error" in reply.json() or "detail" in reply.json()


def test_books_upload_index_search_delete(live_server):
    pdf = write_pathology_book(live_server.root / "second.pdf", title="Second Pathology").read_bytes()
    pdf = pdf.replace(b"Second Pathology", b"Second Pathologx", 0)  # same content would be the same book
    reply = httpx.post(live_server.url + "/v1/books", headers=ADMIN,
                       files={"file": ("../../second edition.pdf", pdf, "application/pdf")},
                       data={"title": "Second Book", "organ_systems": ["general"]})
    assert reply.status_code == 202, reply.text
    job = reply.json()
    deadline = time.monotonic() + 120
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.3)
        job = httpx.get(live_server.url + f"/v1/jobs/{job['job_id']}", headers=USER).json()
    assert job["status"] == "done", job
    assert job["progress"] == 1.0 and job["file_name"] == "second edition.pdf"
    book_id = job["book_id"]
    books = {b["book_id"]: b for b in httpx.get(live_server.url + "/v1/books", headers=USER).json()["books"]}
    assert books[book_id]["title"] == "Second Book" and books[book_id]["status"] == "complete"
    answer = httpx.post(live_server.url + "/v1/ask", headers=USER, timeout=120,
                        json={"question": "crescents in glomeruli", "books": [book_id]}).json()
    assert answer["citations"] and all(c["book_id"] == book_id for c in answer["citations"])
    metrics = httpx.get(live_server.url + "/metrics").text
    assert "pathorag_indexed_pages_total 6.0" in metrics
    assert httpx.delete(live_server.url + f"/v1/books/{book_id}", headers=ADMIN).json() == {"book_id": book_id, "deleted": True}
    assert book_id not in {b["book_id"] for b in httpx.get(live_server.url + "/v1/books", headers=USER).json()["books"]}
    assert httpx.delete(live_server.url + f"/v1/books/{book_id}", headers=ADMIN).status_code == 404
    not_pdf = httpx.post(live_server.url + "/v1/books", headers=ADMIN, files={"file": ("x.pdf", b"hello", "application/pdf")})
    assert not_pdf.status_code == 400


def test_no_keys_refuses_to_start(tmp_path):
    from server.app import create_app
    from server.auth import AuthConfigError

    with pytest.raises(AuthConfigError, match="PATHORAG_ALLOW_ANONYMOUS"):
        create_app(ServerSettings(_env_file=None, data_dir=tmp_path, page_encoder="none"))


def test_interrupted_job_resumes_on_start(tmp_path, text_only_encoders):
    from server.jobs import JobStore

    settings = server_settings(tmp_path / "data", api_keys=None, admin_api_keys=None, allow_anonymous=True)
    upload = settings.data_dir / "server" / "uploads" / ("a" * 32) / "resumed.pdf"
    upload.parent.mkdir(parents=True)
    write_pathology_book(upload, title="Resumed Book")
    jobs = JobStore(settings.data_dir / "server" / "jobs.sqlite")
    jobs.create("resumed.pdf", upload, job_id="a" * 32)
    jobs.update("a" * 32, status="running", pages_done=2, pages_total=6)
    jobs.close()
    index = PageIndex(settings, encoders=text_only_encoders)
    url, stop = start_server(settings, index)
    try:
        deadline = time.monotonic() + 120
        while (job := httpx.get(url + "/v1/jobs/" + "a" * 32).json())["status"] != "done":
            assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
            time.sleep(0.3)
        books = httpx.get(url + "/v1/books").json()["books"]
        assert [b["title"] for b in books] == ["Resumed Book"] and books[0]["status"] == "complete"
    finally:
        stop()
        index.close()
