"""How often the dashboard's login form may be tried: per client address, and in all.

An API token cannot be guessed (at least 16 characters), but an unlimited form lets anyone
try, fill the log, and spend the daemon's time on it. Each client address (an IPv6
client's /64, which one host usually has whole) gets a few tries a minute; all clients
together a few per second, so that many addresses do not add up to many more tries.
Beyond either, the answer is 429 with Retry-After.
"""

from __future__ import annotations

import ipaddress
import math

from notifyd.web.auth import RateLimiter

# Per client: 5 tries at once, then one every 12 seconds.
CLIENT_BURST = 5.0
CLIENT_RATE = 1 / 12
# All clients together: 30 at once, then 2 a second.
GLOBAL_BURST = 30.0
GLOBAL_RATE = 2.0
MAX_CLIENTS = 10_000
_EVERYONE = ""


class LoginThrottle:
    """Counts login attempts; says how long a client must wait, if it must."""

    def __init__(
        self,
        client_rate: float = CLIENT_RATE,
        client_burst: float = CLIENT_BURST,
        global_rate: float = GLOBAL_RATE,
        global_burst: float = GLOBAL_BURST,
    ) -> None:
        self._clients = RateLimiter(client_rate, client_burst, max_callers=MAX_CLIENTS)
        self._everyone = RateLimiter(global_rate, global_burst, max_callers=1)

    @property
    def clients(self) -> int:
        """Client addresses remembered now."""
        return len(self._clients)

    def retry_after(self, remote: str | None) -> int:
        """0 if an attempt from `remote` may go ahead now (it is counted); else seconds."""
        wait = self._clients.wait_time(client_key(remote))
        if wait == 0:
            wait = self._everyone.wait_time(_EVERYONE)
        return max(1, math.ceil(wait)) if wait > 0 else 0


def client_key(remote: str | None) -> str:
    """What one client is: its IPv4 address, or its IPv6 /64."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return remote or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
