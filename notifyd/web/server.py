"""The HTTP server: the listening socket, its connection cap, and the descriptors it leaves.

Every connection costs a file descriptor, and so does every database, SMTP and vendor
connection the daemon opens itself. The cap on inbound connections is what the process's
descriptor limit (RLIMIT_NOFILE) leaves once the daemon's own needs are set aside, worked
out from the settings, so that a flood of clients can never take the descriptor an
attempt needs:

    limit - open at start - (database pool + LISTEN session + SMTP + HTTP vendors
                             + resolver threads + one accept burst + slack)

`http.max_connections` lowers it further. Running short of descriptors anyway (another
process's leak, a limit lowered at run time) is handled by the providers, which report it
as the daemon's own fault, never the vendor's (`LocalResourceError`).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from notifyd.config import Settings
from notifyd.errors import ConfigError
from notifyd.logs import get_logger
from notifyd.web.connections import ConnectionLimits, Connections

try:
    import resource
except ImportError:  # pragma: no cover - Windows: no descriptor limit to read
    resource = None  # type: ignore[assignment]

log = get_logger(__name__)

# Connections the kernel queues before the daemon accepts them; an event loop may accept a
# whole queue at once, and each holds a descriptor until its 503 is written.
BACKLOG = 128
# The default executor's threads resolve host names (one socket each while they do).
RESOLVER_THREADS = min(32, (os.cpu_count() or 1) + 4)
# Files opened now and then: a module imported late, a CA bundle read for TLS, the log.
SLACK = 16
# Fewer connections than this are not a server: refuse to start instead.
MIN_CONNECTIONS = 8


@dataclass(frozen=True, slots=True)
class DescriptorBudget:
    """How the process's descriptors are shared out (None: no limit known)."""

    limit: int | None
    in_use: int
    reserve: int
    connections: int


def reserved_descriptors(settings: Settings) -> int:
    """Descriptors the daemon may need for its own connections at once, from the settings."""
    channels = settings.channels
    database = settings.database.pool_max_size + 2  # the pool; LISTEN, and its replacement
    email = channels.email.concurrency + channels.email.pool_size  # in use, and idle ones
    telegram = channels.telegram.concurrency  # the connector's limit
    sms = channels.sms.concurrency if channels.sms.provider == "twilio" else 0
    return database + email + telegram + sms + RESOLVER_THREADS + BACKLOG + SLACK


def descriptor_budget(
    settings: Settings, *, limit: int | None = None, in_use: int | None = None
) -> DescriptorBudget:
    """The inbound connection cap for this process; `ConfigError` if nothing is left."""
    if limit is None:
        limit = _descriptor_limit()
    if in_use is None:
        in_use = _descriptors_in_use()
    reserve = reserved_descriptors(settings)
    wanted = settings.http.max_connections
    if limit is None:
        return DescriptorBudget(None, in_use, reserve, wanted)
    left = limit - in_use - reserve
    if left < MIN_CONNECTIONS:
        raise ConfigError(
            f"the descriptor limit (RLIMIT_NOFILE {limit}) leaves {max(left, 0)} for HTTP "
            f"connections: {in_use} are open and {reserve} are kept for the database, SMTP "
            "and vendor connections; raise it (ulimit -n) or lower database.pool_max_size "
            "and channels.*.concurrency"
        )
    return DescriptorBudget(limit, in_use, reserve, min(wanted, left))


def _descriptor_limit() -> int | None:
    if resource is None:
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def _descriptors_in_use() -> int:
    for directory in (Path("/proc/self/fd"), Path("/dev/fd")):
        try:
            # Minus the one listing the directory holds open.
            return max(0, len(os.listdir(directory)) - 1)
        except OSError:
            continue
    return SLACK  # unknown: a guess at stdio, the loop and the log


class HttpServer:
    """The daemon's app served on a bound socket, with the limits of `http.*`."""

    def __init__(self, app: web.Application, settings: Settings, budget: DescriptorBudget) -> None:
        http = settings.http
        self.limits = ConnectionLimits(
            max_connections=budget.connections,
            header_timeout=http.header_timeout,
            body_timeout=http.body_timeout,
            idle_timeout=http.idle_timeout,
            send_timeout=http.send_timeout,
        )
        self.budget = budget
        # The connection's own deadlines close idle connections; aiohttp's keep-alive timer
        # would race them (and does not tell headers begun from none), so it only backs
        # them up.
        self._handler_options: dict[str, Any] = {
            "access_log": None,
            "keepalive_timeout": http.idle_timeout + http.header_timeout + 1,
        }
        # The app's startup (database, delivery) runs in setup(); handle_signals is off
        # because the CLI handles SIGTERM and SIGINT itself.
        self.runner = web.AppRunner(app, handle_signals=False, **self._handler_options)
        self.connections: Connections | None = None
        self._server: asyncio.AbstractServer | None = None

    async def setup(self) -> None:
        """Start the app (its cleanup contexts), not yet listening."""
        await self.runner.setup()

    async def listen(self, sock: socket.socket, registry: CollectorRegistry | None = None) -> None:
        """Accept connections on `sock` (bound, not yet listening); count them in `registry`."""
        manager = self.runner.server
        if manager is None:
            raise RuntimeError("HttpServer.setup() must run before listen()")
        self.connections = Connections(manager, self.limits, self._handler_options)
        if registry is not None:
            registry.register(_ConnectionsCollector(self.connections))
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.connections, sock=sock, backlog=BACKLOG)

    async def close(self) -> None:
        """Stop accepting, let running requests finish, then stop the app."""
        if self._server is not None:
            self._server.close()
        await self.runner.cleanup()
        if self._server is not None:
            await self._server.wait_closed()


DROP_REASONS = (
    "header_timeout",
    "body_timeout",
    "idle_timeout",
    "send_timeout",
    "over_capacity",
    "idle_evicted",
)


class _ConnectionsCollector(Collector):
    """The connection counts, read when /metrics is scraped."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections

    def collect(self) -> Iterator[Metric]:
        connections = self._connections
        yield GaugeMetricFamily(
            "notifyd_http_connections", "Inbound HTTP connections open", connections.open
        )
        yield GaugeMetricFamily(
            "notifyd_http_max_connections",
            "Inbound HTTP connections allowed at once",
            connections.limits.max_connections,
        )
        dropped = CounterMetricFamily(
            "notifyd_http_connections_dropped",
            "Inbound HTTP connections closed by a deadline or refused over the cap",
            labels=["reason"],
        )
        for reason in DROP_REASONS:
            dropped.add_metric([reason], connections.dropped[reason])
        yield dropped
