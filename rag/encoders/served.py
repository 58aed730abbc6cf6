"""A page encoder served by vLLM's pooling runner (`vllm serve MODEL --runner pooling`), called over HTTP.

vLLM returns a late-interaction model's per-token vectors from `POST /pooling` with
`"task": "token_embed"`: text queries go in one request (`input`, a list of strings), and each page
image in a chat-style request of its own (`messages` with an `image_url` part). Requests run
concurrently (vLLM batches what arrives together), each with a time limit and retries with backoff
on transient failures (unreachable, timeout, 429 or 5xx). Anything else, or vectors of the wrong
shape, raises `EncoderServiceError` naming the server and the reason: the indexing job records it
and a rerun resumes the book, nothing half-written.

vLLM formats inputs with the backbone's own processor, not colpali-engine's, so the query text is
given colpali-engine's prefix and augmentation tokens here and pages the same prompt text; whether
the vectors then agree with the in-process model's is measured, not assumed (BENCHMARKS.md), and the
index records `runtime="served"` and the input format, so the two are never mixed silently.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import numpy as np
from PIL import Image

from rag.encoders.devices import EncoderLoadError
from rag.encoders.page import PageEncoder, describe_pooling
from rag.models import EncoderInfo
from rag.settings import RagSettings

__all__ = ["EncoderServiceError", "ServedPageEncoder", "load_served_page_encoder"]

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_BACKOFF_S = 0.5
_PROBE_QUERY = "probe"


class EncoderServiceError(RuntimeError):
    """The page-encoder server could not encode a batch (unreachable, too slow, an error, bad vectors)."""


@dataclass(frozen=True)
class InputFormat:
    """What is sent for a query and for a page, in the conventions of a colpali-engine family."""

    query_prefix: str = ""
    query_suffix: str = ""
    page_prompt: str = "Describe the image."

    def describe(self) -> str:
        return (
            f"vLLM /pooling token_embed; query {self.query_prefix!r} + text + {self.query_suffix!r}; "
            f"page as a chat message: image, then {self.page_prompt!r}"
        )


# The query text each family's processor builds (colpali-engine's processing_*.py, transformers'
# ColPaliProcessor), keyed by a substring of the served model's name; sent with add_special_tokens off,
# so these are all the special tokens. A model matching none gets its text as given.
_FORMATS = [
    ("colqwen", InputFormat(query_suffix="<|endoftext|>" * 10)),
    ("colmodernvbert", InputFormat(query_suffix="<end_of_utterance>" * 10)),
    ("colpali", InputFormat(query_prefix="<bos>Question: ", query_suffix="<pad>" * 10 + "\n")),
]


def input_format_for(model_name: str) -> InputFormat:
    lowered = model_name.lower()
    for pattern, fmt in _FORMATS:
        if pattern in lowered:
            return fmt
    return InputFormat()


class PoolingClient:
    """POSTs to a vLLM server's `/pooling` with a time limit and retries; returns (n, dim) float32 arrays."""

    def __init__(self, settings: RagSettings) -> None:
        assert settings.page_encoder_url
        self.base_url = settings.page_encoder_url.rstrip("/").removesuffix("/v1")
        key = settings.page_encoder_api_key
        headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        # Idle connections are dropped before vLLM's server (uvicorn, 5 s keep-alive) closes them, so a
        # request never goes out on a connection the server is closing.
        limits = httpx.Limits(max_connections=settings.page_encoder_concurrency + 2, keepalive_expiry=2.0)
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=settings.page_encoder_timeout_s, limits=limits
        )
        self._retries = settings.page_encoder_max_retries

    def models(self) -> list[dict]:
        """The models the server lists (`GET /v1/models`)."""
        try:
            return self._request("GET", "/v1/models").json()["data"]
        except (KeyError, TypeError, ValueError) as exc:
            raise EncoderServiceError(f"page encoder at {self.base_url}: malformed /v1/models reply: {exc}") from exc

    def token_embed(self, payload: dict, dim: int | None) -> list[np.ndarray]:
        """Per-token vectors of each input, (n_i, dim) unit rows; `dim` None (a probe) accepts any.

        Asked for as raw float32 bytes with a `metadata` header that gives each item's shape (vLLM's
        `encoding_format="bytes"`): a third of the size of JSON floats, and the shape is checked.
        """
        body = {**payload, "task": "token_embed", "encoding_format": "bytes", "embed_dtype": "float32",
                "endianness": "little"}  # fmt: skip
        response = self._request("POST", "/pooling", json=body)
        try:
            items = sorted(json.loads(response.headers["metadata"])["data"], key=lambda item: item["index"])
            return [_decode(response.content, item, dim) for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise EncoderServiceError(f"page encoder at {self.base_url}: malformed /pooling reply: {exc}") from exc

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        where = f"page encoder at {self.base_url}{path}"
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TimeoutException as exc:
                reason = f"no reply within {self._http.timeout.read} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                reason = f"unreachable ({type(exc).__name__}: {exc})"
            else:
                if response.is_success:
                    return response
                reason = f"HTTP {response.status_code}: {_error_message(response)}"
                if response.status_code not in _RETRY_STATUS:
                    raise EncoderServiceError(f"{where}: {reason}")
            if last:
                raise EncoderServiceError(f"{where}: {reason} (after {self._retries + 1} attempts)")
            log.warning("%s: %s; retrying", where, reason)
            time.sleep(_BACKOFF_S * 2**attempt)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    error = body.get("error", body) if isinstance(body, dict) else body
    return str(error.get("message", error) if isinstance(error, dict) else error)[:300]


def _decode(content: bytes, item: dict, dim: int | None) -> np.ndarray:
    """One item of a bytes reply as (n, dim) float32 unit rows; ValueError if it cannot be."""
    if (item.get("embed_dtype"), item.get("endianness")) != ("float32", "little"):
        raise ValueError(f"vectors as {item.get('embed_dtype')} {item.get('endianness')}-endian, asked for float32 little")
    shape = tuple(item["shape"])
    if len(shape) != 2 or not shape[0]:
        raise ValueError(f"expected per-token vectors, got shape {shape}")
    if dim is not None and shape[1] != dim:
        raise ValueError(f"vectors of dimension {shape[1]}, expected {dim}")
    vectors = np.frombuffer(content[item["start"] : item["end"]], dtype="<f4").reshape(shape).astype(np.float32)
    if not np.isfinite(vectors).all():
        raise ValueError("vectors with NaN or infinite values")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    # Lossless, so the server sees the pixels we rendered; zlib level 1 encodes a 2 MP page in half the
    # time of the default (about 40 ms against 85 ms) for a file 6 % larger.
    image.convert("RGB").save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class ServedPageEncoder(PageEncoder):
    """Pages, queries and query images encoded by a vLLM pooling server."""

    def __init__(self, client: PoolingClient, model: str, fmt: InputFormat, info: EncoderInfo, settings: RagSettings):
        super().__init__(info, settings)
        self.client = client
        self.model = model
        self.format = fmt
        self._pool = ThreadPoolExecutor(settings.page_encoder_concurrency, thread_name_prefix="page-encoder")

    def embed_images(self, images: list[Image.Image]) -> list[np.ndarray]:
        return list(self._pool.map(self._embed_image, images))

    def embed_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        if not texts:
            return []
        inputs = [self.format.query_prefix + text + self.format.query_suffix for text in texts]
        payload = {"model": self.model, "input": inputs, "add_special_tokens": False}
        vectors = self.client.token_embed(payload, self.info.dim)
        if len(vectors) != len(texts):
            raise EncoderServiceError(f"page encoder at {self.client.base_url}: {len(vectors)} replies for {len(texts)} queries")
        return vectors

    def _embed_image(self, image: Image.Image) -> np.ndarray:
        content = [{"type": "image_url", "image_url": {"url": _data_url(image)}}]
        if self.format.page_prompt:
            content.append({"type": "text", "text": self.format.page_prompt})
        payload = {"model": self.model, "messages": [{"role": "user", "content": content}]}
        (vectors,) = self.client.token_embed(payload, self.info.dim)
        return vectors


def load_served_page_encoder(settings: RagSettings) -> ServedPageEncoder:
    """Connects to the configured encoder server, checks it serves the model, learns its dimension."""
    client = PoolingClient(settings)
    try:
        served = {model["id"]: model for model in client.models()}
        name = settings.page_encoder
        if name == "auto":
            if len(served) != 1:
                raise EncoderLoadError(
                    client.base_url, f"serves {sorted(served) or 'no models'}; set PATHORAG_PAGE_ENCODER to one"
                )
            name = next(iter(served))
        if name not in served:
            raise EncoderLoadError(name, f"not served by {client.base_url} (it serves {sorted(served)})")
        weights = served[name].get("root") or name
        fmt = input_format_for(weights)
        probe_text = fmt.query_prefix + _PROBE_QUERY + fmt.query_suffix
        probe = client.token_embed({"model": name, "input": [probe_text], "add_special_tokens": False}, None)
    except EncoderServiceError as exc:
        client.close()
        raise EncoderLoadError(settings.page_encoder, str(exc)) from exc
    dim = probe[0].shape[1]
    info = EncoderInfo(
        name=weights,
        dim=dim,
        pooling=describe_pooling(dim, settings),
        runtime="served",
        input_format=fmt.describe(),
    )
    return ServedPageEncoder(client, name, fmt, info, settings)
