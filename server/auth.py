"""API keys as bearer tokens: users ask and read, admins also add and remove books."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from pydantic import SecretStr

from server.settings import ServerSettings

log = logging.getLogger(__name__)


class AuthConfigError(RuntimeError):
    """The server has no API keys and anonymous access is not allowed."""


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _keys(secret: SecretStr | None) -> list[str]:
    if secret is None:
        return []
    return [key.strip() for key in secret.get_secret_value().split(",") if key.strip()]


@dataclass(frozen=True)
class Principal:
    admin: bool


class KeyChecker:
    """Decides who a request is from. Without keys the server refuses to start unless anonymous use is allowed."""

    def __init__(self, settings: ServerSettings) -> None:
        self.admin_keys = _keys(settings.admin_api_keys)
        self.user_keys = _keys(settings.api_keys)
        self.anonymous = settings.allow_anonymous
        if not (self.admin_keys or self.user_keys or self.anonymous):
            raise AuthConfigError(
                "No API keys configured: set PATHORAG_API_KEYS and/or PATHORAG_ADMIN_API_KEYS (comma-separated "
                "bearer tokens), or PATHORAG_ALLOW_ANONYMOUS=true for local use only."
            )
        if self.anonymous:
            log.warning(
                "PATHORAG_ALLOW_ANONYMOUS is on: requests without an API key are served%s. Use this locally only.",
                "" if self.admin_keys else ", including adding and removing books",
            )

    def check(self, authorization: str | None, admin: bool = False) -> Principal:
        token = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AuthError(401, "the Authorization header must be 'Bearer <API key>'")
            token = value.strip()
        if token is None:
            if not self.anonymous:
                raise AuthError(401, "missing API key: send 'Authorization: Bearer <API key>'")
            principal = Principal(admin=not self.admin_keys)
        elif _match(token, self.admin_keys):
            principal = Principal(admin=True)
        elif _match(token, self.user_keys):
            principal = Principal(admin=False)
        else:
            raise AuthError(401, "invalid API key")
        if admin and not principal.admin:
            raise AuthError(403, "this operation needs an admin API key")
        return principal


def _match(token: str, keys: list[str]) -> bool:
    found = False
    for key in keys:  # compare with every key in constant time
        found |= hmac.compare_digest(token.encode(), key.encode())
    return found
