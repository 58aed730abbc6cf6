"""Signed, expiring links to page images, so that a reader can open a cited page in a browser (from
a chat client, say) without the API key.

A link is the page's `/v1/pages` URL with `expires` (Unix seconds), the cited passage's `highlight`
boxes when it has them, and `signature`: HMAC-SHA256 over the book, the page, the expiry and the
highlight, keyed by `PATHORAG_PAGE_LINK_SECRET` (unset: a random key per
server start, so links end with a restart; replicas behind one address need one shared key). A link
opens one page, in any size, until it expires; an altered or expired one is refused with 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from server.auth import AuthError
from server.settings import ServerSettings

from rag.models import Box
from server.pages import format_highlight

PageLinker = Callable[[str, int, list[Box]], str]  # (book_id, page, boxes to highlight) -> signed absolute URL


class PageLinks:
    def __init__(self, settings: ServerSettings) -> None:
        secret = settings.page_link_secret
        self._key = secret.get_secret_value().encode() if secret else secrets.token_bytes(32)
        self.ttl_s = settings.page_link_ttl_s
        self.public_url = (settings.public_url or "").rstrip("/")

    def _signature(self, book_id: str, page: int, expires: int, highlight: str) -> str:
        signed = f"{book_id}/{page}/{expires}/{highlight}".encode()
        return hmac.new(self._key, signed, hashlib.sha256).hexdigest()

    def url(self, base_url: str, book_id: str, page: int, boxes: list[Box] = (), now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.ttl_s)
        highlight = format_highlight(boxes)
        signature = self._signature(book_id, page, expires, highlight)
        marked = f"&highlight={highlight}" if highlight else ""
        return f"{base_url}/v1/pages/{book_id}/{page}?expires={expires}{marked}&signature={signature}"

    def linker(self, request_base_url: str) -> PageLinker:
        """Links under the public URL, or else the address the request came to."""
        base = self.public_url or request_base_url.rstrip("/")
        return lambda book_id, page, boxes: self.url(base, book_id, page, boxes)

    def check(self, book_id: str, page: int, expires: str, highlight: str, signature: str) -> None:
        """Raise AuthError (403) unless the link was signed here for this page and highlight and has not
        expired."""
        valid = expires.isdigit() and hmac.compare_digest(
            signature, self._signature(book_id, page, int(expires), highlight)
        )
        if not valid:
            raise AuthError(403, "this page link is not valid (altered, or signed with another key)")
        if int(expires) < time.time():
            raise AuthError(403, "this page link has expired; ask again for a fresh one")
