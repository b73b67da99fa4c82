"""API tokens: who may call /api/, and how often.

With tokens configured, every /api/ request needs `Authorization: Bearer <token>`; the
token is compared with every configured one in constant time, so the answer's timing does
not tell how much of a guess was right. Probes (/healthz, /readyz) and /metrics stay open.
An optional per-token rate limit (a token bucket) answers 429 with Retry-After.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from notifyd.web.keys import CALLER
from notifyd.web.problems import ApiError, Handler

PROTECTED_PREFIX = "/api/"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per caller: `rate` requests per second, bursts up to `burst`.

    At most `max_callers` buckets are kept: beyond that, the full ones (callers quiet long
    enough to have their whole burst back) are forgotten, then the least recent ones.
    """

    def __init__(self, rate: float, burst: float, max_callers: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_callers = max_callers
        self._buckets: dict[str, _Bucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def wait_time(self, caller: str) -> float:
        """0 if `caller` may go ahead now (and count it), else seconds until it may."""
        now = time.monotonic()
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= self.max_callers:
                self._forget(now)
            bucket = self._buckets[caller] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def _forget(self, now: float) -> None:
        full = [
            caller
            for caller, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.burst
        ]
        for caller in full:
            del self._buckets[caller]
        if len(self._buckets) >= self.max_callers:
            by_age = sorted(self._buckets, key=lambda caller: self._buckets[caller].updated)
            for caller in by_age[: len(by_age) - self.max_callers // 2]:
                del self._buckets[caller]


class Authenticator:
    """Checks bearer tokens against the configured ones."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = [token.encode() for token in tokens if token]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def caller(self, authorization: str | None) -> str | None:
        """The caller id for an Authorization header, or None if it is not a valid token."""
        if not self._tokens:
            return ""
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        candidate = presented.strip().encode()
        matched: bytes | None = None
        for token in self._tokens:  # every token is compared: no early exit
            if hmac.compare_digest(candidate, token):
                matched = token
        if matched is None:
            return None
        return caller_id(matched)


def caller_id(token: bytes) -> str:
    """A name for a token that logs and tables may hold: not the token, not reversible."""
    return hashlib.sha256(token).hexdigest()[:16]


def auth_middleware(authenticator: Authenticator, limiter: RateLimiter | None) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(PROTECTED_PREFIX):
            return await handler(request)
        caller = authenticator.caller(request.headers.get("Authorization"))
        if caller is None:
            raise ApiError(
                401,
                "Send a valid API token as Authorization: Bearer <token>.",
                [{"field": "Authorization", "message": "missing or invalid bearer token"}],
                headers={"WWW-Authenticate": 'Bearer realm="notifyd"'},
            )
        if limiter is not None:
            wait = limiter.wait_time(caller)
            if wait > 0:
                raise ApiError(
                    429,
                    f"Too many requests; at most {limiter.rate:g} per second.",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        request[CALLER] = caller
        return await handler(request)

    return middleware
