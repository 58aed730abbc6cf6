"""A real, tiny OpenAI-compatible chat server on loopback that replies from a script and records requests.

Each POST to /v1/chat/completions takes the next reply of the script: a dict (sent as JSON content),
a str (sent verbatim), `Slow(seconds, reply)`, `Refusal(text)` or `Status(code)`. An exhausted
script answers HTTP 500 so a test that calls the model more often than planned fails loudly, unless
a `default` reply is given (a benchmark's endless model).
A request with `"stream": true` gets the same reply as server-sent chunks of a few characters
(`chunk_delay` seconds apart). `max_in_flight` is the most requests it was answering at once.
`down()` closes its port (connections are refused) and `up()` listens on the same port again.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Slow:
    seconds: float
    reply: object


@dataclass
class Refusal:
    text: str


@dataclass
class Status:
    code: int


class ScriptedVLM:
    def __init__(self, replies: list | None = None, model: str = "scripted-vlm", default: object = None) -> None:
        self.model = model
        self.default = default
        self.replies = list(replies or [])
        self.requests: list[dict] = []
        self.usage = (100, 20)
        self.chunk_delay = 0.0
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._port = 0
        self.up()

    def up(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler())
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    def script(self, *replies, usage: tuple[int, int] = (100, 20)) -> None:
        """Replace the script; every reply reports `usage` (prompt, completion tokens)."""
        with self._lock:
            self.replies = list(replies)
            self.requests = []
            self.usage = usage
            self.in_flight = self.max_in_flight = 0

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self, request: dict):
        with self._lock:
            self.requests.append(request)
            if self.replies:
                return self.replies.pop(0)
            return self.default if self.default is not None else Status(500)

    def _handler(self):
        vlm = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # the model list, as readiness checks ask for it
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": vlm.model, "object": "model", "owned_by": "tests"}]})
                else:
                    self._send(404, {"error": {"message": "not found", "type": "not_found"}})

            def do_POST(self) -> None:
                with vlm._lock:
                    vlm.in_flight += 1
                    vlm.max_in_flight = max(vlm.max_in_flight, vlm.in_flight)
                try:
                    self._answer()
                finally:
                    with vlm._lock:
                        vlm.in_flight -= 1

            def _answer(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                reply = vlm._next(body)
                if isinstance(reply, Slow):
                    time.sleep(reply.seconds)
                    reply = reply.reply
                if isinstance(reply, Status):
                    self._send(reply.code, {"error": {"message": "scripted failure", "type": "server_error"}})
                    return
                message = {"role": "assistant", "content": None, "refusal": None}
                if isinstance(reply, Refusal):
                    message["refusal"] = reply.text
                else:
                    message["content"] = reply if isinstance(reply, str) else json.dumps(reply)
                if body.get("stream"):
                    self._stream(message)
                    return
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(vlm.requests)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": vlm.model,
                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                        "usage": {
                            "prompt_tokens": vlm.usage[0],
                            "completion_tokens": vlm.usage[1],
                            "total_tokens": sum(vlm.usage),
                        },
                    },
                )

            def _stream(self, message: dict) -> None:
                head = {"id": f"chatcmpl-{len(vlm.requests)}", "object": "chat.completion.chunk", "created": int(time.time()), "model": vlm.model}
                text, refusal = message["content"] or "", message["refusal"]
                deltas = [{"refusal": refusal}] if refusal else [{"content": text[i : i + 7]} for i in range(0, len(text), 7)]
                chunks = [head | {"choices": [{"index": 0, "delta": {"role": "assistant", **d}, "finish_reason": None}]} for d in deltas]
                chunks.append(head | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                usage = {"prompt_tokens": vlm.usage[0], "completion_tokens": vlm.usage[1], "total_tokens": sum(vlm.usage)}
                chunks.append(head | {"choices": [], "usage": usage})
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for chunk in chunks:
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(vlm.chunk_delay)
                    self.wfile.write(b"data: [DONE]\n\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        return Handler
