"""Behind a reverse proxy: the client's address and scheme, as the proxy reports them.

notifyd speaks plain HTTP; TLS ends at a proxy in front of it. The proxy says which
scheme the client used and who the client is, in `Forwarded` (RFC 7239) or in
`X-Forwarded-Proto` / `X-Forwarded-For`. Anyone can send those headers, so they are read
only from the peers listed in `http.trusted_proxies`, and only the entries those proxies
appended: the client is the rightmost address that is not itself a trusted proxy.

What it changes: `request.secure` (the dashboard's cookie is then `Secure`) and
`request.remote` (the address login attempts are counted by, and logged).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from notifyd.web.problems import Handler

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
SCHEMES = frozenset({"http", "https"})


def forwarded_middleware(trusted: Sequence[Network]) -> Middleware:
    proxies = tuple(trusted)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if proxies and _is_trusted(_peer(request), proxies):
            scheme, client = _reported(request, proxies)
            if scheme is not None or client is not None:
                request = request.clone(
                    scheme=scheme or request.scheme,
                    remote=str(client) if client is not None else (request.remote or ""),
                )
        return await handler(request)

    return middleware


def _peer(request: web.Request) -> Address | None:
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    return _address(peer[0]) if isinstance(peer, tuple) and peer else None


def _is_trusted(address: Address | None, proxies: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in proxies)


def _reported(
    request: web.Request, proxies: Sequence[Network]
) -> tuple[str | None, Address | None]:
    """The scheme the nearest proxy reports, and the rightmost untrusted client address."""
    elements = request.forwarded  # RFC 7239, parsed by aiohttp; the nearest proxy last
    if elements:
        scheme = elements[-1].get("proto")
        hops = [element.get("for") for element in elements]
    else:
        scheme = _last(request.headers.getall("X-Forwarded-Proto", []))
        hops = [
            hop
            for value in request.headers.getall("X-Forwarded-For", [])
            for hop in value.split(",")
        ]
    scheme = scheme.strip().lower() if scheme else None
    client: Address | None = None
    for hop in reversed(hops):
        address = _node_address(hop)
        if address is None:
            break  # "unknown", an obfuscated name or garbage: nothing further left is sure
        client = address
        if not _is_trusted(address, proxies):
            break
    return (scheme if scheme in SCHEMES else None), client


def _last(values: list[str]) -> str | None:
    items = [item for value in values for item in value.split(",")]
    return items[-1] if items else None


def _node_address(node: str | None) -> Address | None:
    """The address in a `for=` node ("192.0.2.1", "192.0.2.1:80", "[2001:db8::1]:80")."""
    if node is None:
        return None
    text = node.strip().strip('"')
    if text.startswith("["):
        return _address(text[1 : text.find("]")] if "]" in text else "")
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return _address(text)


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
