"""Who may use the dashboard: the login cookie, and the refusal of cross-site requests.

With API tokens configured, an operator logs in with one of them and gets a cookie that
holds the token's caller id, an expiry and an HMAC signature: never the token. The HMAC
key is derived from all the configured tokens, so a cookie survives a restart, works on
every instance with the same tokens, and stops working as soon as the tokens change.
Without tokens the dashboard is open, like the API.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp import web

from notifyd.web.auth import Authenticator
from notifyd.web.keys import SETTINGS

COOKIE_NAME = "notifyd_admin"
COOKIE_PATH = "/admin"
SESSION_SECONDS = 8 * 3600
# A new label makes every cookie issued under the old one invalid.
_KEY_LABEL = b"notifyd admin session v1"


def session_key(tokens: Sequence[str]) -> bytes:
    """The HMAC key for tokens: the same for the same set, in any order."""
    digest = hashlib.sha256(_KEY_LABEL)
    for token in sorted({token.encode() for token in tokens}):
        # Length-prefixed, so no two different token lists hash alike.
        digest.update(len(token).to_bytes(4, "big"))
        digest.update(token)
    return digest.digest()


class Sessions:
    """Logs operators in with an API token, and issues and checks the signed cookie."""

    def __init__(self, tokens: Sequence[str], lifetime: float = SESSION_SECONDS) -> None:
        self._authenticator = Authenticator(tokens)
        self._key = session_key(tokens)
        self.lifetime = lifetime

    @property
    def enabled(self) -> bool:
        """Whether a login is needed (API tokens are configured)."""
        return self._authenticator.enabled

    def caller(self, token: str) -> str | None:
        """The caller id of a token typed into the login form, or None if it is not valid."""
        if not token.strip():
            return None
        # The API's own check: the same tokens, compared in constant time.
        return self._authenticator.caller(f"Bearer {token}")

    def issue(self, caller: str, now: float) -> str:
        """A cookie value for `caller`, valid for `lifetime` seconds from `now`."""
        payload = f"{caller}.{int(now + self.lifetime)}"
        return f"{payload}.{self._sign(payload)}"

    def verify(self, value: str | None, now: float) -> str | None:
        """The caller id a cookie value was issued for, or None if forged or expired."""
        if not value or not value.isascii():
            return None
        payload, _, signature = value.rpartition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        caller, _, expires = payload.partition(".")
        if not expires.isdigit():
            return None
        # Also refuses a cookie issued for longer than the lifetime in force now.
        if not now < int(expires) <= now + self.lifetime:
            return None
        return caller

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()


def secure_cookie(request: web.Request) -> bool:
    """Whether the cookie gets `Secure`: over https (as a trusted proxy says), or always."""
    return request.secure or request.config_dict[SETTINGS].http.secure_cookies == "always"


def set_cookie(
    response: web.StreamResponse, request: web.Request, value: str, max_age: float
) -> None:
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=int(max_age),
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=secure_cookie(request),
    )


def clear_cookie(response: web.StreamResponse, request: web.Request) -> None:
    response.del_cookie(
        COOKIE_NAME,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=secure_cookie(request),
    )


def same_origin(request: web.Request) -> bool:
    """Whether a state-changing request comes from the dashboard's own pages.

    A browser says where a request comes from: `Sec-Fetch-Site` (every current browser),
    else `Origin`, which must name this host. A request with neither is refused too: a
    form post from the dashboard always carries one of them.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("Origin")
    host = request.headers.get("Host")  # not request.host, which may ask DNS without one
    if origin is None or origin == "null" or host is None:
        return False
    parts = urlsplit(origin)
    return parts.scheme in {"http", "https"} and parts.netloc.lower() == host.strip().lower()
