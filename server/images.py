"""Image references from requests -> bytes for the agent: data URLs, or remote URLs from allowed hosts only."""

from __future__ import annotations

import base64
import binascii
import re
import time
from urllib.parse import urlsplit

import httpx
from starlette.concurrency import run_in_threadpool

from agent.errors import AgentInputError
from agent.images import ImageInputError, ImageTooLargeError
from server.settings import ServerSettings

_MAX_REDIRECTS = 3
_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,", re.ASCII)


def allowed_hosts(settings: ServerSettings) -> set[str]:
    return {host.strip().lower() for host in settings.image_url_hosts.split(",") if host.strip()}


def image_bytes(reference: str, settings: ServerSettings, name: str) -> bytes:
    """The bytes of one image reference; `ImageInputError` (a 4xx) for anything unusable or refused."""
    reference = (reference or "").strip()
    limit = settings.agent_max_image_bytes
    match = _DATA_URL.match(reference)
    if match:
        if not match.group("b64"):
            raise ImageInputError(f"{name}: data URLs must be base64-encoded")
        payload = reference[match.end():]
        if len(payload) > limit * 4 // 3 + 8:
            raise ImageTooLargeError(f"{name}: file larger than {limit} bytes")
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ImageInputError(f"{name}: invalid base64 in data URL") from None
    parts = urlsplit(reference)
    if parts.scheme in ("http", "https"):
        hosts = allowed_hosts(settings)
        if (parts.hostname or "").lower() not in hosts:
            raise ImageInputError(
                f"{name}: remote image URLs are refused (send a base64 data URL, or allow the host in PATHORAG_IMAGE_URL_HOSTS)"
            )
        return _fetch(reference, hosts, limit, settings.image_url_timeout_s, name)
    raise ImageInputError(f"{name}: expected a base64 data URL (data:image/...;base64,...)")


def _fetch(url: str, hosts: set[str], limit: int, timeout_s: float, name: str) -> bytes:
    """Download from an allowed host: redirects only to allowed hosts (no SSRF through them), size and time capped."""
    deadline = time.monotonic() + timeout_s  # httpx's timeout is per read; this one is for the whole download
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
            for _ in range(_MAX_REDIRECTS + 1):
                with client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = str(response.url.join(response.headers["location"]))
                        parts = urlsplit(url)
                        if parts.scheme not in ("http", "https") or (parts.hostname or "").lower() not in hosts:
                            raise ImageInputError(f"{name}: the image URL redirects to a host that is not allowed")
                        continue
                    if response.status_code != 200:
                        raise ImageInputError(f"{name}: the image URL answered HTTP {response.status_code}")
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > limit:
                        raise ImageTooLargeError(f"{name}: file larger than {limit} bytes")
                    data = bytearray()
                    for chunk in response.iter_bytes():
                        data += chunk
                        if len(data) > limit:
                            raise ImageTooLargeError(f"{name}: file larger than {limit} bytes")
                        if time.monotonic() > deadline:
                            raise httpx.ReadTimeout("the download took too long")
                    return bytes(data)
            raise ImageInputError(f"{name}: the image URL redirects more than {_MAX_REDIRECTS} times")
    except httpx.TimeoutException:
        raise ImageInputError(f"{name}: the image URL did not answer within {timeout_s:g} s") from None
    except httpx.HTTPError as error:
        raise ImageInputError(f"{name}: cannot fetch the image URL ({type(error).__name__})") from None


def check_image_count(count: int, settings: ServerSettings, note: str = " (agent_max_images)") -> None:
    """`AgentInputError` (a 422) for more images than a question may carry."""
    if count > settings.agent_max_images:
        raise AgentInputError(f"{count} images given; at most {settings.agent_max_images} are accepted{note}")


async def images_bytes(references: list[str], settings: ServerSettings, note: str = " (agent_max_images)") -> list[bytes]:
    """The bytes of a request's image references, read one by one in worker threads (downloads block)."""
    check_image_count(len(references), settings, note)
    return [await run_in_threadpool(image_bytes, ref, settings, f"image {n}") for n, ref in enumerate(references, start=1)]
