"""A loopback HTTP server speaking vLLM's pooling API (`GET /v1/models`, `POST /pooling`), with faults on demand.

It answers `token_embed` requests the way vLLM 0.32 does (JSON floats, or raw little-endian float32
with a `metadata` header of shapes for `encoding_format="bytes"`; one item per input) with deterministic unit vectors derived from each input's bytes, so that the served
page-encoder client and the indexing job can be driven through outages, slowness, HTTP errors and
wrong dimensions. The real vLLM server is exercised in tests/test_served_encoder_vllm.py.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


@dataclass
class Faults:
    """What the server does wrong, changed by the test while it runs."""

    delay_s: float = 0.0  # sleep before answering /pooling
    errors: list[int] = field(default_factory=list)  # statuses answered to the next /pooling requests, in turn
    dim: int | None = None  # answer with vectors of this dimension instead
    fail_after: int | None = None  # /pooling requests answered before every later one gets a 500


class PoolingServer:
    def __init__(self, model: str = "vidore/colqwen3-test", dim: int = 16, port: int = 0) -> None:
        self.model, self.dim = model, dim
        self.faults = Faults()
        self.requests: list[dict] = []  # bodies of the /pooling requests received
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> PoolingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def vectors(self, item: bytes, dim: int) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(item).digest()[:4], "little")
        rows = np.random.RandomState(seed).standard_normal((3 + seed % 5, dim)).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def _answer(self, body: dict) -> tuple[int, dict]:
        with self._lock:
            self.requests.append(body)
            count = len(self.requests)
            status = self.faults.errors.pop(0) if self.faults.errors else 200
        if self.faults.delay_s:
            time.sleep(self.faults.delay_s)
        if self.faults.fail_after is not None and count > self.faults.fail_after:
            status = 500
        if status != 200:
            return status, {"error": {"message": f"injected fault {status}", "type": "InternalServerError", "code": status}}
        if body.get("model") != self.model:
            return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist.", "code": 404}}
        if body.get("task") != "token_embed":
            return 400, {"error": {"message": "task must be token_embed", "code": 400}}
        if "messages" in body:
            items = [json.dumps(body["messages"]).encode()]
        else:
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            items = [text.encode() for text in inputs]
        dim = self.faults.dim or self.dim
        vectors = [self.vectors(item, dim) for item in items]
        if body.get("encoding_format") == "bytes":  # raw little-endian float32, shapes in a header
            metadata, offset = [], 0
            for index, rows in enumerate(vectors):
                size = rows.nbytes
                metadata.append(dict(index=index, embed_dtype="float32", endianness="little", start=offset,
                                     end=offset + size, shape=list(rows.shape)))  # fmt: skip
                offset += size
            raw = b"".join(rows.astype("<f4").tobytes() for rows in vectors)
            return 200, (raw, {"metadata": json.dumps({"model": self.model, "data": metadata})})
        data = [{"index": i, "object": "pooling", "data": rows.tolist()} for i, rows in enumerate(vectors)]
        return 200, {"object": "list", "model": self.model, "data": data, "usage": {"prompt_tokens": 1}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, body: dict | tuple[bytes, dict]) -> None:
                raw, headers = body if isinstance(body, tuple) else (json.dumps(body).encode(), {})
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if headers else "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model", "root": server.model}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path != "/pooling":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                try:
                    self._send(*server._answer(body))
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (its time limit)
                    pass

        return Handler
