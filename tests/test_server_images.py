"""Remote image URLs over real HTTP: a loopback image server (stdlib http.server) and the pathorag server
(uvicorn on loopback). Refused without an allow-list, fetched from allowed hosts, size and pixel limits on
what is fetched, redirects only to allowed hosts (SSRF), and time limits on slow or dribbling servers."""

from __future__ import annotations

import io
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from PIL import Image

from tests.test_server import USER, live_server, start_server  # noqa: F401

pytestmark = pytest.mark.slow

MAX_IMAGE_BYTES = 200_000


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 200 if mode != "RGB" else (200, 120, 180)).save(buffer, format="PNG")
    return buffer.getvalue()


class ImageHost:
    """Serves images and misbehaviours on 127.0.0.1; records the paths asked for."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.small = _png((48, 48))
        self.bomb = _png((6000, 6000), "1")  # a small file that decodes to 36 million pixels
        noise = Image.frombytes("RGB", (400, 400), random.Random(0).randbytes(400 * 400 * 3))  # does not compress
        buffer = io.BytesIO()
        noise.save(buffer, format="PNG")
        self.big = buffer.getvalue()
        assert len(self.big) > MAX_IMAGE_BYTES and len(self.bomb) < MAX_IMAGE_BYTES
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                host.paths.append(self.path)
                try:
                    self._route()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the time-limit tests)

            def _route(self) -> None:
                path = self.path
                if path == "/slide.png":
                    self._send(host.small)
                elif path == "/big.png":
                    self._send(host.big)
                elif path == "/big-unsized.png":  # no Content-Length: the size shows only while reading
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.end_headers()
                    self.wfile.write(host.big)
                elif path == "/bomb.png":
                    self._send(host.bomb)
                elif path == "/to-slide":
                    self._redirect(host.url("/slide.png"))
                elif path == "/to-localhost":
                    self._redirect(host.url("/slide.png", host="localhost"))
                elif path == "/loop":
                    self._redirect(host.url("/loop"))
                elif path == "/slow.png":
                    time.sleep(4)
                    self._send(host.small)
                elif path == "/dribble.png":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(host.small)))
                    self.end_headers()
                    for byte in host.small[:40]:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.2)
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def _send(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler


@pytest.fixture(scope="module")
def image_host():
    host = ImageHost()
    yield host
    host.close()


@pytest.fixture(scope="module")
def allowing_server(live_server, image_host, text_only_encoders):  # noqa: F811
    """A second server (own data directory and index) that allows remote images from 127.0.0.1 only."""
    from indexer.jobs import BookMeta, index_pdf
    from rag.page_index import PageIndex
    from tests.conftest import write_pathology_book

    settings = live_server.settings.model_copy(update={
        "data_dir": live_server.root / "allowing", "image_url_hosts": "127.0.0.1",
        "agent_max_image_bytes": MAX_IMAGE_BYTES, "image_url_timeout_s": 1.5,
    })
    index = PageIndex(settings, encoders=text_only_encoders)
    assert index_pdf(index, write_pathology_book(live_server.root / "allowing.pdf"), BookMeta()).ok
    url, stop = start_server(settings, index)
    yield url
    stop()
    index.close()


def ask(url: str, image: str, timeout: float = 60) -> httpx.Response:
    return httpx.post(url + "/v1/ask", headers=USER, timeout=timeout,
                      json={"question": "What do Reed-Sternberg cells look like?", "images": [image]})


def test_remote_urls_are_refused_without_an_allow_list(live_server, image_host):  # noqa: F811
    image_host.paths.clear()
    reply = ask(live_server.url, image_host.url("/slide.png"))
    assert reply.status_code == 422
    assert "remote image URLs are refused" in reply.json()["error"]["message"]
    assert "PATHORAG_IMAGE_URL_HOSTS" in reply.json()["error"]["message"]
    assert image_host.paths == []  # not even one request left the server


def test_an_allowed_host_is_fetched(allowing_server, image_host):
    image_host.paths.clear()
    reply = ask(allowing_server, image_host.url("/slide.png"))
    assert reply.status_code == 200, reply.text
    assert reply.json()["citations"] and image_host.paths == ["/slide.png"]
    # the chat endpoint takes the same URLs as image_url parts
    chat = httpx.post(allowing_server + "/v1/chat/completions", headers=USER, timeout=60, json={
        "model": "pathorag", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is shown?"}, {"type": "image_url", "image_url": {"url": image_host.url("/slide.png")}},
        ]}]})
    assert chat.status_code == 200 and "Sources:" in chat.json()["choices"][0]["message"]["content"]
    # a host that is not on the list (the same machine by another name) is still refused
    other = ask(allowing_server, image_host.url("/slide.png", host="localhost"))
    assert other.status_code == 422 and "refused" in other.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/big.png", "/big-unsized.png"])
def test_a_fetched_image_over_the_size_limit_is_refused(allowing_server, image_host, path):
    reply = ask(allowing_server, image_host.url(path))
    assert reply.status_code == 413 and f"larger than {MAX_IMAGE_BYTES} bytes" in reply.json()["error"]["message"]


def test_a_fetched_decompression_bomb_is_refused(allowing_server, image_host):
    reply = ask(allowing_server, image_host.url("/bomb.png"))
    assert reply.status_code == 413 and "pixels" in reply.json()["error"]["message"]


def test_redirects_are_followed_only_to_allowed_hosts(allowing_server, image_host):
    image_host.paths.clear()
    assert ask(allowing_server, image_host.url("/to-slide")).status_code == 200
    assert image_host.paths == ["/to-slide", "/slide.png"]
    image_host.paths.clear()
    away = ask(allowing_server, image_host.url("/to-localhost"))
    assert away.status_code == 422 and "redirects to a host that is not allowed" in away.json()["error"]["message"]
    assert image_host.paths == ["/to-localhost"]  # the redirect target was never asked for
    loop = ask(allowing_server, image_host.url("/loop"))
    assert loop.status_code == 422 and "redirects more than" in loop.json()["error"]["message"]
    missing = ask(allowing_server, image_host.url("/nothing.png"))
    assert missing.status_code == 422 and "HTTP 404" in missing.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/slow.png", "/dribble.png"])
def test_slow_image_hosts_hit_the_time_limit(allowing_server, image_host, path):
    started = time.monotonic()
    reply = ask(allowing_server, image_host.url(path))
    took = time.monotonic() - started
    assert reply.status_code == 422 and "did not answer within 1.5 s" in reply.json()["error"]["message"]
    assert took < 3.5
