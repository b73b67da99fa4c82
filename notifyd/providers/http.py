"""What the providers of HTTP vendors (Telegram, Twilio) share.

One aiohttp session per provider, opened at start and reopened if closed. Their secrets
travel in every request (a token in the URL, credentials in a header), and aiohttp keeps
both in its exceptions: the providers never chain an aiohttp exception, and everything they
build from one, or from a vendor's answer, passes through `_scrub` or `_redact`, which
mask every form of the secrets (`notifyd.redaction`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import aiohttp

from notifyd.errors import TransientProviderError
from notifyd.providers.base import Provider, local_resource_error
from notifyd.redaction import Scrubber

# How much of a non-JSON answer (an HTML error page from a proxy) to keep.
BODY_EXCERPT = 500
# The longest wait a vendor's answer is taken at its word for: a "retry after" further
# away than a day is a vendor's bug (or a hostile answer), not a plan.
LONGEST_RETRY_AFTER: Final = 86_400.0


class HttpProvider(Provider):
    """A provider with one shared HTTP session and secrets kept out of what it records."""

    def __init__(
        self,
        *,
        timeout: float,
        concurrency: int,
        secrets: Iterable[str],  # each in every form it can be written in is masked
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._timeout = timeout
        self._concurrency = concurrency
        self._headers = dict(headers or {})
        self._scrubber = Scrubber(secrets)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP session shared by all sends."""
        self._ensure_session()

    async def close(self) -> None:
        """Close the HTTP session; a later send opens a new one."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        # No await between the check and the assignment, so concurrent sends share one.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                connector=aiohttp.TCPConnector(limit=self._concurrency),
            )
        return self._session

    def _unreachable(self, vendor: str, exc: BaseException) -> TransientProviderError:
        """The error for a request that got no answer: this host's shortage, or the vendor's."""
        return local_resource_error(vendor, exc) or TransientProviderError(
            f"{vendor} unreachable: {self._describe(exc)}"
        )

    def _describe(self, exc: BaseException) -> str:
        """The exception's type and text, scrubbed."""
        text = str(exc)
        return self._scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)

    def _scrub(self, text: str) -> str:
        return self._scrubber.scrub(text)

    def _redact(self, value: Any) -> Any:
        """`value` with the secrets scrubbed from every string, however deeply nested."""
        return self._scrubber.redact(value)


def json_object(raw: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # also UnicodeDecodeError; nesting too deep
        return None
    return body if isinstance(body, dict) else None


def seconds_value(value: object) -> float | None:
    """A wait in seconds from a vendor's JSON (a number, or a number written as text).

    None for anything else: a negative or non-finite number, a boolean, an integer too
    large for a float, text that is not a number. Waits longer than a day are cut to a day.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float) or value < 0:
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an integer of hundreds of digits: JSON allows it
        return LONGEST_RETRY_AFTER
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, LONGEST_RETRY_AFTER)


def retry_after_seconds(header: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header in seconds, given as seconds or as an HTTP date (RFC 9110).

    A date in the past is 0; a date without a zone, a negative or unreadable value, None.
    """
    if header is None:
        return None
    header = header.strip()
    if not header:
        return None
    try:
        value = float(header)
    except ValueError:
        try:
            when = parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            return None
        value = max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    return seconds_value(value)
