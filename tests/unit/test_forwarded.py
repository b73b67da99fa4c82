"""What a trusted proxy's headers say about the client: its address and its scheme."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from notifyd.web.forwarded import forwarded_middleware

PROXY = "10.0.0.2"


class _Transport:
    def __init__(self, peer: str) -> None:
        self._peer = (peer, 40000)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._peer if name == "peername" else default


async def seen(headers: dict[str, str], peer: str = PROXY) -> tuple[str, str | None]:
    """(scheme, remote) as the handler behind the middleware sees them."""
    middleware = forwarded_middleware([ipaddress.ip_network("10.0.0.0/24")])
    request = make_mocked_request("GET", "/", headers=headers, transport=_Transport(peer))
    result: list[tuple[str, str | None]] = []

    async def handler(inner: web.Request) -> web.StreamResponse:
        result.append((inner.scheme, inner.remote))
        return web.Response()

    await middleware(request, handler)
    return result[0]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, ("http", PROXY)),
        (
            {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"},
            ("https", "198.51.100.7"),
        ),
        ({"X-Forwarded-Proto": "HTTPS"}, ("https", PROXY)),
        ({"X-Forwarded-Proto": "http, https"}, ("https", PROXY)),  # the nearest proxy's
        ({"X-Forwarded-Proto": "gopher"}, ("http", PROXY)),
        ({"X-Forwarded-For": "1.2.3.4, 198.51.100.7, 10.0.0.9"}, ("http", "198.51.100.7")),
        ({"X-Forwarded-For": "garbage"}, ("http", PROXY)),
        ({"X-Forwarded-For": "198.51.100.7, unknown"}, ("http", PROXY)),
        ({"Forwarded": 'for="[2001:db8::7]:4711";proto=https'}, ("https", "2001:db8::7")),
        ({"Forwarded": "for=192.0.2.60:80;proto=http, for=10.0.0.5"}, ("http", "192.0.2.60")),
        ({"Forwarded": "for=unknown;proto=https"}, ("https", PROXY)),
        # Forwarded, when present, is the one read.
        ({"Forwarded": "for=192.0.2.60", "X-Forwarded-For": "203.0.113.1"}, ("http", "192.0.2.60")),
    ],
)
async def test_a_trusted_proxy_is_believed(
    headers: dict[str, str], expected: tuple[str, str | None]
) -> None:
    assert await seen(headers) == expected


async def test_anyone_else_is_not() -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    assert await seen(headers, peer="192.0.2.1") == ("http", "192.0.2.1")
