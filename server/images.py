"""Image references from requests -> bytes for the agent: data URLs, or remote URLs from allowed hosts only."""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

import httpx

from agent.images import ImageInputError
from rag.settings import Settings

_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,", re.ASCII)


def allowed_hosts(settings: Settings) -> set[str]:
    return {host.strip().lower() for host in settings.image_url_hosts.split(",") if host.strip()}


def image_bytes(reference: str, settings: Settings, name: str) -> bytes:
    """The bytes of one image reference; `ImageInputError` (a 4xx) for anything unusable or refused."""
    reference = (reference or "").strip()
    limit = settings.agent_max_image_bytes
    match = _DATA_URL.match(reference)
    if match:
        if not match.group("b64"):
            raise ImageInputError(f"{name}: data URLs must be base64-encoded")
        payload = reference[match.end():]
        if len(payload) > limit * 4 // 3 + 8:
            raise ImageInputError(f"{name}: file larger than {limit} bytes")
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ImageInputError(f"{name}: invalid base64 in data URL") from None
    parts = urlsplit(reference)
    if parts.scheme in ("http", "https"):
        host = (parts.hostname or "").lower()
        if host not in allowed_hosts(settings):
            raise ImageInputError(
                f"{name}: remote image URLs are refused (send a base64 data URL, or allow the host in PATHORAG_IMAGE_URL_HOSTS)"
            )
        return _fetch(reference, limit, name)
    raise ImageInputError(f"{name}: expected a base64 data URL (data:image/...;base64,...)")


def _fetch(url: str, limit: int, name: str) -> bytes:
    """Download from an allowed host: no redirects (they could leave the allow-list), size capped."""
    try:
        with httpx.stream("GET", url, timeout=10.0, follow_redirects=False) as response:
            if response.status_code != 200:
                raise ImageInputError(f"{name}: the image URL answered HTTP {response.status_code}")
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > limit:
                    raise ImageInputError(f"{name}: file larger than {limit} bytes")
            return bytes(data)
    except httpx.HTTPError as error:
        raise ImageInputError(f"{name}: cannot fetch the image URL ({type(error).__name__})") from None
