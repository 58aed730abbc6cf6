"""Open WebUI (the real chat front end, its own venv) in front of pathorag's OpenAI-compatible API.

Open WebUI's backend runs on one loopback port with its OpenAI connection pointed at a pathorag server on
another. One test talks to Open WebUI's own HTTP API: it lists the models (pathorag's must appear) and
sends a streamed chat completion, which must come back with pathorag's progress and cited answer. The
other asks in Open WebUI's own page (headless Chromium) as a reader would, and checks what it renders:
the sources, their quoted passages and links that open the cited pages without an API key.
Skips when the venv of `scripts/setup_open_webui.sh` is missing (`PATHORAG_OPEN_WEBUI_PYTHON` overrides it).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests import browser as browser_support
from tests.test_server import live_server  # noqa: F401

pytestmark = pytest.mark.slow

DEFAULT_PYTHON = Path.home() / ".cache" / "pathorag" / "open-webui-venv" / "bin" / "python"
START_TIMEOUT_S = 300  # about 60-90 s on 2 cores: it imports torch, transformers and friends


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def open_webui_python() -> Path:
    python = Path(os.environ.get("PATHORAG_OPEN_WEBUI_PYTHON") or DEFAULT_PYTHON)
    if not python.exists():
        pytest.skip(f"no Open WebUI venv at {python}; run `bash scripts/setup_open_webui.sh`")
    if not (python.parent.parent / "pathorag-ready").exists():
        pytest.skip(f"the Open WebUI venv of {python} is unfinished (no pathorag-ready marker); rerun scripts/setup_open_webui.sh")
    check = subprocess.run([str(python), "-c", "import open_webui"], capture_output=True, text=True, timeout=120)
    if check.returncode != 0:
        pytest.skip(f"{python} cannot import open_webui ({check.stderr.strip()[-300:]}); rerun scripts/setup_open_webui.sh")
    return python


def open_webui_env(data_dir: Path, pathorag_url: str, api_key: str) -> dict[str, str]:
    """Offline, no login, only our OpenAI-compatible connection, no model downloads or telemetry."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PATHORAG_", "OPENAI_", "OLLAMA_"))}
    return keep | {
        "DATA_DIR": str(data_dir),
        "WEBUI_SECRET_KEY": "pathorag-test-secret",
        "WEBUI_AUTH": "False",
        "ENABLE_PERSISTENT_CONFIG": "False",
        "ENABLE_OLLAMA_API": "False",
        "ENABLE_OPENAI_API": "True",
        "OPENAI_API_BASE_URL": pathorag_url + "/v1",
        "OPENAI_API_KEY": api_key,
        "OFFLINE_MODE": "True",
        "HF_HUB_OFFLINE": "1",
        "RAG_EMBEDDING_ENGINE": "openai",  # no local sentence-transformers model to load (or download)
        "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "False",
        "RAG_RERANKING_MODEL_AUTO_UPDATE": "False",
        "ENABLE_VERSION_UPDATE_CHECK": "False",
        "ANONYMIZED_TELEMETRY": "False",
        "DO_NOT_TRACK": "True",
        "SCARF_NO_ANALYTICS": "True",
    }


@pytest.fixture(scope="module")
def open_webui(open_webui_python, live_server, tmp_path_factory):  # noqa: F811
    """Open WebUI's backend on loopback, talking to the evidence-only `live_server`; yields its URL."""
    root = tmp_path_factory.mktemp("open-webui")
    port = _free_port()
    log_path = root / "open-webui.log"
    command = [str(open_webui_python.parent / "open-webui"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=root, env=open_webui_env(root / "data", live_server.url, "user-key"),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"Open WebUI exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Open WebUI did not start within {START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_open_webui_lists_our_model_and_streams_a_cited_answer(open_webui):
    # No login (WEBUI_AUTH=False): signing in with empty credentials gives the local admin's token.
    signin = httpx.post(open_webui + "/api/v1/auths/signin", json={"email": "", "password": ""}, timeout=30)
    assert signin.status_code == 200, signin.text
    headers = {"Authorization": f"Bearer {signin.json()['token']}"}

    models = httpx.get(open_webui + "/api/models", headers=headers, timeout=60)
    assert models.status_code == 200, models.text
    assert "pathorag" in [model["id"] for model in models.json()["data"]]

    body = {"model": "pathorag", "stream": True,
            "messages": [{"role": "user", "content": "Which cells are characteristic of Hodgkin lymphoma?"}]}
    reasoning, content, lines, sources = "", "", [], []
    with httpx.stream("POST", open_webui + "/api/chat/completions", headers=headers, json=body, timeout=120) as reply:
        assert reply.status_code == 200, reply.read()
        for line in reply.iter_lines():
            if not line.startswith("data:"):
                continue
            lines.append(line)
            payload = line[5:].strip()
            if payload == "[DONE]":
                continue
            for choice in json.loads(payload).get("choices", []):
                delta = choice.get("delta") or {}
                reasoning += delta.get("reasoning_content") or ""
                content += delta.get("content") or ""
                sources += [a["url_citation"] for a in delta.get("annotations") or [] if a.get("type") == "url_citation"]
    assert lines and lines[-1].strip() == "data: [DONE]"
    assert "Searching:" in reasoning and "Searching:" not in content
    assert "Sources:" in content and "[P1] Essentials of Pathology, p. 102" in content, content
    # The cited pages also as OpenAI url_citation annotations, which Open WebUI turns into its own source list.
    assert sources and sources[0]["title"] == "[P1] Essentials of Pathology, p. 102" and "signature=" in sources[0]["url"]


def test_a_reader_sees_quoted_sources_that_open_their_pages_in_open_webuis_page(open_webui):
    question = "Which cells are characteristic of Hodgkin lymphoma?"
    with browser_support.chromium() as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.set_default_timeout(120_000)
        page.goto(open_webui, wait_until="load")
        page.wait_for_selector("#chat-input")
        page.get_by_role("button", name="Okay, Let's Go!").click()  # the release notes shown on a first visit
        page.click("#chat-input")
        page.keyboard.type(question)
        page.keyboard.press("Enter")
        page.wait_for_function("document.body.innerText.includes('[P5]')")
        page.wait_for_selector("text=5 Sources")  # Open WebUI's own source list, from the url_citation annotations
        artifacts = browser_support.ARTIFACTS / "open-webui"
        artifacts.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(artifacts / "01-cited-answer.png"), full_page=True)
        links = [a.get_attribute("href") for a in page.query_selector_all("a") if a.inner_text() == "open page"]
        quotes = page.query_selector_all("blockquote")
        first_quote, first_quote_bold = quotes[0].inner_text(), [b.inner_text() for b in quotes[0].query_selector_all("strong")]
    assert len(links) == len(quotes) == 5
    assert "Reed-Sternberg cells are large binucleate cells" in first_quote
    assert "cells" in first_quote_bold  # the question's words, marked
    page_image = httpx.get(links[0], timeout=30)  # the reader's click: no API key, the signed link alone
    assert page_image.status_code == 200 and page_image.headers["content-type"] == "image/webp"
    assert "highlight=" in links[0] and httpx.get(links[0].replace("highlight=", "highlight=1,"), timeout=30).status_code == 403
