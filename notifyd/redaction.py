"""Secrets kept out of what notifyd shows: one mask, one scrubber, URLs without secrets.

A secret travels in more forms than itself: URL-quoted in a request path or a query,
base64 in HTTP basic credentials, in an SMTP AUTH PLAIN blob (`\\0user\\0password`) or as
AUTH LOGIN's answer. A vendor that echoes what it got puts those forms in its reply, which
becomes an error, an attempt row, an API answer, a dashboard page and a log line. So a
`Scrubber` is given each secret, and each string a secret is sent inside of, and masks
every form of them.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import (
    SplitResult,
    quote,
    quote_plus,
    unquote,
    unquote_plus,
    urlsplit,
    urlunsplit,
)

REDACTED: Final = "***"
# Query parameters of a URL whose values are secrets (libpq's password and sslpassword,
# and anything else that says what it is).
_SECRET_PARAMETER: Final = re.compile(r"pass|secret|token", re.IGNORECASE)


def encoded_forms(secret: str) -> set[str]:
    """The ways `secret` is written: as is, URL-quoted, in base64 (with or without padding)."""
    if not secret:
        return set()
    data = secret.encode("utf-8")
    forms = {secret, quote(secret, safe=""), quote(secret, safe=":"), quote_plus(secret)}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(data).decode("ascii")
        forms |= {encoded, encoded.rstrip("=")}
    return {form for form in forms if form}


class Scrubber:
    """Masks every form of some secrets in text and in JSON-like values."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {form for secret in secrets for form in encoded_forms(secret)}
        # Longest first: a form that contains another is replaced whole.
        self.forms = sorted(forms, key=lambda form: (-len(form), form))
        self._pattern = (
            re.compile("|".join(re.escape(form) for form in self.forms)) if self.forms else None
        )

    def scrub(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(REDACTED, text)

    def redact(self, value: Any) -> Any:
        """`value` with the secrets masked in every string, however deeply nested."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {self.redact(k): self.redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact(v) for v in value]
        return value

    def found_in(self, text: str) -> bool:
        return self._pattern is not None and self._pattern.search(text) is not None

    def leaks(self, error: BaseException) -> bool:
        """Whether an error, or one it was raised from or during, shows a secret."""
        seen: set[int] = set()
        chain: BaseException | None = error
        while chain is not None and id(chain) not in seen:
            seen.add(id(chain))
            if self.found_in(f"{chain!s} {chain!r}"):
                return True
            chain = chain.__cause__ or chain.__context__
        return False


def url_secrets(url: str) -> list[str]:
    """The secrets a URL carries: its password, the values of secret query parameters,
    and `user:password` (what HTTP basic credentials encode), decoded and as written."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    found: list[str] = []
    if password:
        found += [password, unquote(password)]
        username = unquote(parts.username or "")
        found.append(f"{username}:{unquote(password)}")
    for name, value in _parameters(parts.query):
        if value and _SECRET_PARAMETER.search(unquote_plus(name)):
            found += [value, unquote_plus(value)]
    return found


def redact_url(url: str) -> str:
    """The URL with its password and the values of secret query parameters as `***`."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return REDACTED  # where the secrets are cannot be told: nothing is shown
    netloc = parts.netloc
    if password is not None:
        # The raw host part keeps IPv6 brackets that `hostname` would strip.
        host = netloc.rpartition("@")[2]
        netloc = f"{parts.username or ''}:{REDACTED}@{host}"
    query = "&".join(
        f"{name}={REDACTED}"
        if value is not None and _SECRET_PARAMETER.search(unquote_plus(name))
        else (name if value is None else f"{name}={value}")
        for name, value in _parameters(parts.query)
    )
    return _join(parts._replace(netloc=netloc, query=query), url)


def split_password(url: str) -> tuple[str, str | None]:
    """The URL without its password (in the userinfo or as `?password=`), and the password.

    For a program that takes the password another way than on its command line.
    """
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password else None
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}@{host}"
    kept = []
    for name, value in _parameters(parts.query):
        if unquote_plus(name) == "password":
            password = unquote_plus(value or "")
        else:
            kept.append(name if value is None else f"{name}={value}")
    return _join(parts._replace(netloc=netloc, query="&".join(kept)), url), password


def _join(parts: SplitResult, original: str) -> str:
    """`urlunsplit`, keeping an empty authority: `postgresql:///db?host=/run/postgresql`
    would come back as `postgresql:/db?...`, which psql reads as a database name."""
    joined = urlunsplit(parts)
    if not parts.netloc and original.lower().startswith(f"{parts.scheme}://"):
        joined = f"{parts.scheme}://{joined[len(parts.scheme) + 1 :]}"
    return joined


def _parameters(query: str) -> list[tuple[str, str | None]]:
    """The query's `name=value` pairs as written (None for a name without `=`)."""
    pairs: list[tuple[str, str | None]] = []
    for item in query.split("&") if query else []:
        name, equals, value = item.partition("=")
        pairs.append((name, value if equals else None))
    return pairs
