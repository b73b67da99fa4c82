"""Query strings, checked once for every route: each parameter known, given once, readable.

aiohttp decodes a query string leniently: `%ff` becomes U+FFFD, `%00` a NUL, a stray `%`
stays as it is, and a route that reads no parameter ignores them all. Here the raw query
string is decoded strictly, and a route names the parameters it takes (`takes_query`):

- `%` not followed by two hex digits, bytes that are not UTF-8, control characters
  (NUL included): 400, the query string is malformed;
- a parameter the route does not take, or one given twice: 422 naming it (the dashboard
  answers these with its own 400 page).

The values themselves are the route's to check (`notifyd.web.api.read_query`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import unquote_to_bytes

from aiohttp import web

from notifyd.web.problems import ApiError

H = TypeVar("H", bound=Callable[..., object])

_ATTRIBUTE = "__notifyd_query__"
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
QUERY_FIELD = "(query)"


def takes_query(*names: str) -> Callable[[H], H]:
    """Declare the query parameters a handler reads; any other is refused."""

    def mark(handler: H) -> H:
        setattr(handler, _ATTRIBUTE, frozenset(names))
        return handler

    return mark


def accepted(request: web.Request) -> frozenset[str]:
    """The parameters the matched route takes (none for routes that do not say)."""
    names = getattr(request.match_info.handler, _ATTRIBUTE, None)
    return names if isinstance(names, frozenset) else frozenset()


def parse_query(raw: str) -> list[tuple[str, str]]:
    """`name=value&...` decoded strictly (UTF-8, `+` as a space); 400 if it cannot be."""
    pairs: list[tuple[str, str]] = []
    for part in raw.split("&"):
        if not part:
            continue  # `a=1&&b=2`, a trailing `&`: harmless, and what some clients send
        raw_name, _, raw_value = part.partition("=")
        pairs.append((_decode(raw_name), _decode(raw_value)))
    return pairs


def _decode(text: str) -> str:
    if _BAD_ESCAPE.search(text):
        raise _malformed("a % must start an escape of two hex digits")
    try:
        decoded = unquote_to_bytes(text.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("an escape decodes to bytes that are not UTF-8") from None
    if any(unicodedata.category(char) == "Cc" for char in decoded):
        raise _malformed("control characters (NUL, line breaks, ...) are not allowed")
    return decoded


def check_query(request: web.Request) -> Mapping[str, str]:
    """The request's parameters, each once and each one the route takes; else the 4xx."""
    pairs = parse_query(request.rel_url.raw_query_string)
    known = accepted(request)
    params: dict[str, str] = {}
    errors: list[dict[str, str]] = []
    for name, value in pairs:
        if name not in known:
            errors.append({"field": name, "message": "unknown parameter"})
        elif name in params:
            errors.append({"field": name, "message": "give this parameter once"})
        params[name] = value
    if errors:
        raise ApiError(422, "The query string is invalid.", _unique(errors))
    return params


def _unique(errors: list[dict[str, str]]) -> list[dict[str, str]]:
    seen: list[dict[str, str]] = []
    for error in errors:
        if error not in seen:
            seen.append(error)
    return seen


def _malformed(message: str) -> ApiError:
    return ApiError(
        400, "The query string is malformed.", [{"field": QUERY_FIELD, "message": message}]
    )
