"""What stands between notifyd and PostgreSQL: nothing, or a connection pooler.

A transaction pooler (PgBouncer's `pool_mode = transaction`, RDS Proxy, Supavisor's
transaction mode) hands each transaction to whichever server connection is free, so
nothing may outlive a transaction there: no named prepared statement (asyncpg's statement
cache), no SET, no LISTEN, no session advisory lock. A session pooler keeps one server
connection per client connection, which is as good as a direct one.

A pooler is recognised by the process id it gives the client at connection time (the
`BackendKeyData` message, used for cancel requests): PostgreSQL gives its own backend's,
while a pooler, which has no backend to give, makes one up. The two compared tell them
apart; a plain TCP proxy passes PostgreSQL's through and counts as direct, which it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import asyncpg

# `database.pooler`: what the URLs reach. "auto" detects it, treating any pooler as one
# that pools transactions (the cautious reading: a session pooler then costs the LISTEN
# session, never correctness).
from notifyd.config import PoolerSetting

BACKEND_PID: Final = "SELECT pg_backend_pid()"


@dataclass(frozen=True, slots=True)
class Route:
    """How a URL reaches PostgreSQL, as found (or as configured)."""

    # "none" (PostgreSQL itself), "session" or "transaction".
    pooler: Literal["none", "session", "transaction"]
    # Whether it was detected (True) or taken from `database.pooler` (False).
    detected: bool

    @property
    def keeps_sessions(self) -> bool:
        """Whether session state (prepared statements, LISTEN, advisory locks) survives."""
        return self.pooler != "transaction"

    def describe(self) -> str:
        how = "detected" if self.detected else "database.pooler"
        if self.pooler == "none":
            return f"PostgreSQL itself ({how})"
        return f"a {self.pooler} pooler ({how})"


async def reaches_postgres(connection: asyncpg.Connection) -> bool:
    """Whether `connection` talks to PostgreSQL itself rather than to a pooler."""
    server_pid = await connection.fetchval(BACKEND_PID)
    return bool(server_pid == connection.get_server_pid())


async def route_of(connection: asyncpg.Connection, setting: PoolerSetting) -> Route:
    """The route `connection` takes, detected when `setting` is "auto"."""
    if setting != "auto":
        return Route(setting, detected=False)
    if await reaches_postgres(connection):
        return Route("none", detected=True)
    return Route("transaction", detected=True)
