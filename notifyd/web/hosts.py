"""Which `Host` names the daemon answers: its defence against DNS rebinding.

A web page on evil.example can point its own name at 127.0.0.1 (or at any address of the
daemon's network), and the visitor's browser then lets it read what notifyd answers on
that address, and post forms to it: on a daemon without API tokens, the users' contacts
and the queue. The browser still says which name it asked for, in `Host`; a name notifyd
does not answer to gets a 421 (Misdirected Request), and nothing runs.

Served:
- the loopback names: `localhost`, and loopback addresses (`127.0.0.1`, `[::1]`);
- listening on another address, any IP address as well (no page can rebind a literal
  address: its origin would be the address itself), so that kubelet, load balancers and
  other services reach the daemon by IP;
- the names in `http.allowed_hosts` (`notify.example.com`, `.example.com` for the domain
  and its subdomains, `*` for any name).

The probes (`/healthz`, `/readyz`, `/metrics`) answer any Host: they change nothing, and
whoever checks health (a kubelet sends the pod's IP, a proxy its own name) must never be
turned away for a name nobody thought to list.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp import HttpVersion11, web

from notifyd.web.problems import ApiError

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
HOST_FIELD = "Host"
# host [ ":" port ]: a bracketed IPv6 address, or a name or IPv4 address (RFC 9110 7.2).
_HOST_HEADER = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::[0-9]{0,5})?")


class HostPolicy:
    """Answers whether a request's Host names this daemon (module docstring)."""

    def __init__(self, listen_host: str, allowed: Sequence[str]) -> None:
        self.any_name = "*" in allowed
        self.names = frozenset(name for name in allowed if not name.startswith("."))
        self.domains = tuple(name for name in allowed if name.startswith("."))
        self.any_address = not is_loopback(listen_host)

    def refusal(self, request: web.BaseRequest) -> ApiError | None:
        """The 4xx for a request whose Host is malformed or not served; None if served."""
        values = request.headers.getall(HOST_FIELD, [])
        target = request.raw_path
        if not target.startswith("/") and "://" in target:
            # An absolute-form target names the host itself, and wins over Host (RFC 9112
            # 3.2.2): only proxies get those, but a client may send one anyway.
            values = [urlsplit(target).netloc]
        if not values:
            if request.version >= HttpVersion11:
                return _bad_host("HTTP/1.1 requires a Host header")
            return None  # HTTP/1.0 without Host: a plain client, never a browser
        header = values[0].strip()
        match = _HOST_HEADER.fullmatch(header)
        if match is None:
            return _bad_host("is not a host name with an optional port")
        if not self.serves(match.group(1)):
            return ApiError(
                421,
                "This server does not answer to that host name.",
                [
                    {
                        "field": HOST_FIELD,
                        "message": f"{header!r} is not served here (see http.allowed_hosts)",
                    }
                ],
            )
        return None

    def serves(self, host: str) -> bool:
        """Whether `host` (the Host header without its port) is served."""
        name = host.lower().removesuffix(".")
        address = _address(name)
        if address is not None:
            if address.is_loopback or self.any_address:
                return True
            literal = f"[{address}]" if address.version == 6 else str(address)
            return literal in self.names or self.any_name
        if name == "localhost" or self.any_name or name in self.names:
            return True
        return any(name == domain[1:] or name.endswith(domain) for domain in self.domains)


def is_loopback(host: str) -> bool:
    """Whether an address to listen on is a loopback one (a name: assume it is not)."""
    if host == "localhost":
        return True
    address = _address(host)
    return address is not None and address.is_loopback


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        return None


def _bad_host(message: str) -> ApiError:
    return ApiError(400, "The Host header is invalid.", [{"field": HOST_FIELD, "message": message}])
