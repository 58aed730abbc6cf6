"""The served page encoder (vLLM's pooling API over HTTP) through outages, slowness, errors and bad vectors.

A loopback server speaking the pooling API (tests/pooling_server.py) stands in for the encoder so
that faults can be injected at exact points; the indexing job, the real embedded store, real MiniLM
and real PyMuPDF run as in production. The real vLLM is in tests/test_served_encoder_vllm.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from indexer.jobs import index_pdf
from rag.encoders import Encoders
from rag.encoders.devices import EncoderLoadError
from rag.encoders.page import load_page_encoder
from rag.encoders.served import EncoderServiceError
from rag.encoders.sparse import Bm25Encoder
from rag.page_index import EncoderMismatchError, PageIndex
from rag.search import SearchQuery, search_pages
from server.settings import ServerSettings
from tests.conftest import write_case_book
from tests.pooling_server import PoolingServer
from tests.vllm_server import free_port

pytestmark = pytest.mark.slow

BOOK_PAGES = 20


@pytest.fixture
def server():
    with PoolingServer() as server:
        yield server


def served_settings(tmp_path: Path, url: str, **overrides) -> ServerSettings:
    values = dict(
        _env_file=None, data_dir=tmp_path / "data", ocr=False, render_dpi=72, page_encoder="auto",
        page_encoder_url=url, page_encoder_max_retries=0, page_encoder_timeout_s=5, page_encoder_concurrency=1,
    )  # fmt: skip
    return ServerSettings(**(values | overrides))


def served_index(settings: ServerSettings, text_encoder) -> PageIndex:
    page = load_page_encoder(settings)
    return PageIndex(settings, encoders=Encoders(text=text_encoder, sparse=Bm25Encoder(), page=page))


def long_book(tmp_path: Path) -> Path:
    return write_case_book(tmp_path / "long.pdf", BOOK_PAGES)


# --- connecting ----------------------------------------------------------------------------------


def test_connect_learns_the_model_and_its_dimension(tmp_path: Path, server: PoolingServer) -> None:
    encoder = load_page_encoder(served_settings(tmp_path, server.url + "/v1"))  # a /v1 base URL works too

    assert (encoder.info.name, encoder.info.dim, encoder.info.runtime) == (server.model, 16, "served")
    assert "token_embed" in encoder.info.input_format and "<|endoftext|>" in encoder.info.input_format
    (query,) = encoder.embed_queries(["caseous necrosis"])
    assert query.shape[1] == 16 and np.allclose(np.linalg.norm(query, axis=1), 1.0, atol=1e-5)
    assert server.requests[-1]["input"] == ["caseous necrosis" + "<|endoftext|>" * 10]
    assert server.requests[-1]["encoding_format"] == "bytes"


def test_connect_errors_name_the_server_and_the_reason(tmp_path: Path, server: PoolingServer) -> None:
    with pytest.raises(EncoderLoadError, match=r"not served by .* \(it serves \['vidore/colqwen3-test'\]\)"):
        load_page_encoder(served_settings(tmp_path, server.url, page_encoder="other/model"))
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EncoderLoadError, match=rf"page encoder at {closed}/v1/models: unreachable"):
        load_page_encoder(served_settings(tmp_path, closed))


# --- indexing and searching through it -------------------------------------------------------------


def test_index_and_search_through_the_served_encoder(tmp_path: Path, server: PoolingServer, text_encoder) -> None:
    settings = served_settings(tmp_path, server.url, page_encoder_concurrency=4)
    index = served_index(settings, text_encoder)
    pdf = long_book(tmp_path)

    report = index_pdf(index, pdf)

    assert (report.status, report.pages_indexed, report.error) == ("indexed", BOOK_PAGES, "")
    page_requests = [r for r in server.requests if "messages" in r]
    assert len(page_requests) == BOOK_PAGES  # one request per page image
    (part,) = page_requests[0]["messages"][0]["content"][:1]
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/png;base64,")
    assert {"extract", "page encoder", "text encoder", "page images", "store"} <= set(report.stage_seconds)
    hits = search_pages(index, SearchQuery(text="Reed-Sternberg cells", channels=["page"]))
    assert hits and all(hit.book_id == report.book_id for hit in hits)
    index.close()


def test_an_outage_mid_book_fails_clearly_hides_the_book_and_a_rerun_finishes_it(
    tmp_path: Path, server: PoolingServer, text_encoder
) -> None:
    settings = served_settings(tmp_path, server.url)
    index = served_index(settings, text_encoder)  # 1 probe request
    pdf = long_book(tmp_path)
    server.faults.fail_after = 1 + 8 + 3  # the probe, the first batch of 8 pages, 3 pages of the second

    report = index_pdf(index, pdf)

    assert report.status == "failed"
    assert f"page encoder at {server.url}/pooling: HTTP 500: injected fault 500" in report.error
    assert f"8 of {BOOK_PAGES} pages are stored" in report.error
    assert index.store.get_book(report.book_id).status == "indexing"
    assert not index.complete_books()
    assert not search_pages(index, SearchQuery(text="Reed-Sternberg cells", channels=["bm25"]))

    server.faults.fail_after = None
    rerun = index_pdf(index, pdf)

    assert (rerun.status, rerun.pages_indexed) == ("indexed", BOOK_PAGES - 8)
    assert index.store.page_numbers(report.book_id) == set(range(1, BOOK_PAGES + 1))
    assert [book.book_id for book in index.complete_books()] == [report.book_id]
    index.close()


def test_a_stopped_server_fails_the_batch_and_the_book_resumes_when_it_is_back(
    tmp_path: Path, server: PoolingServer, text_encoder
) -> None:
    settings = served_settings(tmp_path, server.url)
    index = served_index(settings, text_encoder)
    pdf = long_book(tmp_path)
    port = int(server.url.rsplit(":", 1)[1])
    server.stop()

    report = index_pdf(index, pdf)

    assert report.status == "failed" and "unreachable" in report.error and f"0 of {BOOK_PAGES}" in report.error

    with PoolingServer(port=port):
        rerun = index_pdf(index, pdf)
    assert (rerun.status, rerun.pages_indexed) == ("indexed", BOOK_PAGES)

    # down again at query time: the search fails with the reason, it does not quietly drop the channel
    with pytest.raises(EncoderServiceError, match="unreachable"):
        search_pages(index, SearchQuery(text="granuloma", channels=["page"]))
    index.close()


def test_a_slow_server_times_out_and_is_retried(tmp_path: Path, server: PoolingServer, text_encoder) -> None:
    settings = served_settings(tmp_path, server.url, page_encoder_timeout_s=0.5, page_encoder_max_retries=1)
    encoder = load_page_encoder(settings)
    server.faults.delay_s = 2.0
    before = len(server.requests)

    with pytest.raises(EncoderServiceError, match=r"no reply within 0\.5 s .*\(after 2 attempts\)"):
        encoder.embed_queries(["granuloma"])
    assert len(server.requests) - before == 2


def test_transient_errors_are_retried_and_client_errors_are_not(tmp_path: Path, server: PoolingServer) -> None:
    encoder = load_page_encoder(served_settings(tmp_path, server.url, page_encoder_max_retries=2))
    before = len(server.requests)
    server.faults.errors = [503, 502]
    assert encoder.embed_queries(["granuloma"])[0].shape[1] == 16
    assert len(server.requests) - before == 3

    server.faults.errors = [400]
    with pytest.raises(EncoderServiceError, match="HTTP 400: injected fault 400$"):
        encoder.embed_queries(["granuloma"])
    assert len(server.requests) - before == 4


def test_wrong_dimensions_fail_the_book_and_store_nothing(tmp_path: Path, server: PoolingServer, text_encoder) -> None:
    settings = served_settings(tmp_path, server.url)
    index = served_index(settings, text_encoder)
    server.faults.dim = 8

    report = index_pdf(index, long_book(tmp_path))

    assert report.status == "failed" and "vectors of dimension 8, expected 16" in report.error
    assert index.store.page_numbers(report.book_id) == set()
    index.close()


def test_an_index_built_served_refuses_an_in_process_encoder(tmp_path: Path, server: PoolingServer, text_encoder) -> None:
    settings = served_settings(tmp_path, server.url)
    index = served_index(settings, text_encoder)
    assert index_pdf(index, long_book(tmp_path)).status == "indexed"
    page = index.encoders.page
    index.close()

    page.info = page.info.model_copy(update={"runtime": "in process", "input_format": "colpali_engine ColQwen3Processor"})
    other = PageIndex(settings, encoders=Encoders(text=text_encoder, sparse=Bm25Encoder(), page=page))
    with pytest.raises(EncoderMismatchError, match="index has vidore/colqwen3-test \\(served, vLLM"):
        other.encoders
    other.close()


def test_the_http_api_answers_503_with_the_reason_when_the_encoder_is_down(
    tmp_path: Path, server: PoolingServer, text_encoder
) -> None:
    import httpx

    from tests.test_server import USER, start_server

    settings = served_settings(tmp_path, server.url, api_keys="user-key")
    index = served_index(settings, text_encoder)
    assert index_pdf(index, long_book(tmp_path)).status == "indexed"
    url, stop = start_server(settings, index)
    port = int(server.url.rsplit(":", 1)[1])
    try:
        server.stop()
        with ThreadPoolExecutor(4) as pool:  # several clients asking during the outage
            responses = list(pool.map(lambda _: httpx.post(
                url + "/v1/ask", json={"question": "What is a granuloma?"}, headers=USER, timeout=60), range(4)))
        with PoolingServer(port=port):  # the encoder is back: the server recovers without a restart
            recovered = httpx.post(url + "/v1/ask", json={"question": "What is a granuloma?"}, headers=USER, timeout=60)
    finally:
        stop()
        index.close()

    assert [response.status_code for response in responses] == [503] * 4
    error = responses[0].json()["error"]
    assert error["type"] == "service_unavailable" and f"page encoder at {server.url}" in error["message"]
    assert recovered.status_code == 200 and recovered.json()["citations"], recovered.text


def test_an_upload_job_waits_out_an_encoder_outage_and_then_finishes(
    tmp_path: Path, server: PoolingServer, text_encoder
) -> None:
    import shutil
    import time

    from server.jobs import JobStore, JobWorker

    settings = served_settings(tmp_path, server.url)
    index = served_index(settings, text_encoder)
    upload = tmp_path / "uploads" / "job" / "long.pdf"
    upload.parent.mkdir(parents=True)
    shutil.copy(long_book(tmp_path), upload)
    store = JobStore(tmp_path / "jobs.sqlite")
    worker = JobWorker(store, index, retry_after_s=0.5)
    port = int(server.url.rsplit(":", 1)[1])
    server.stop()

    def wait_for(condition) -> None:
        deadline = time.monotonic() + 120
        while not condition(store.get(job.job_id)):
            assert time.monotonic() < deadline, store.get(job.job_id)
            time.sleep(0.2)

    job = store.create("long.pdf", upload)
    worker.start()
    worker.submit(job.job_id)
    try:
        wait_for(lambda j: j.status == "queued" and "unreachable" in j.error and "retrying in" in j.error)
        assert upload.exists()  # kept for the retry
        with PoolingServer(port=port):
            wait_for(lambda j: j.status == "done")
    finally:
        worker.stop()
        store.close()
    assert [book.page_count for book in index.complete_books()] == [BOOK_PAGES]
    index.close()


def test_the_cli_reports_an_outage_exits_nonzero_and_a_rerun_resumes(
    tmp_path: Path, server: PoolingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from pathorag.cli import app

    monkeypatch.chdir(tmp_path)  # no stray .env
    env = {"PATHORAG_DATA_DIR": str(tmp_path / "data"), "PATHORAG_OCR": "false", "PATHORAG_RENDER_DPI": "72",
           "PATHORAG_PAGE_ENCODER_URL": server.url, "PATHORAG_PAGE_ENCODER_MAX_RETRIES": "0",
           "PATHORAG_PAGE_ENCODER_CONCURRENCY": "1", "COLUMNS": "250"}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pdf = long_book(tmp_path)
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, " ".join((result.stdout + result.stderr).split())

    server.faults.fail_after = 1 + 8  # the probe, then the first batch
    code, output = run("index", "add", str(pdf))
    assert code == 1
    assert f"failed long.pdf: page encoder at {server.url}/pooling: HTTP 500" in output
    assert f"8 of {BOOK_PAGES} pages are stored" in output

    server.faults.fail_after = None
    code, output = run("index", "add", str(pdf))
    assert code == 0 and "indexed: long.pdf" in output and f"{BOOK_PAGES - 8} pages" in output

    monkeypatch.setenv("PATHORAG_PAGE_ENCODER_URL", f"http://127.0.0.1:{free_port()}")
    assert run("index", "list")[0] == 0  # listing needs no encoder
    code, output = run("search", "granuloma")
    assert code == 2 and "error:" in output and "unreachable" in output
