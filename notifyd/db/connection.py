"""The connection pool, and the translation of asyncpg's errors into notifyd's.

Nothing outside `notifyd.db` sees asyncpg records or SQL; asyncpg errors become
`DatabaseUnavailableError`, `NotFoundError` or `ConstraintViolationError` here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from notifyd.config import PoolerSetting
from notifyd.db import codecs
from notifyd.db.pooler import Route, route_of
from notifyd.errors import ConstraintViolationError, DatabaseUnavailableError

T = TypeVar("T")

# Errors that mean "the database is not there right now", as opposed to a bad query.
CONNECTION_ERRORS: Final = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InvalidAuthorizationSpecificationError,
    # asyncpg's own state went wrong (an operation it thinks is still running, after a
    # cancellation raced a lost server): the connection cannot be used again.
    asyncpg.InternalClientError,
)
# The server refusing a new session: the database is not accepting connections (being
# dropped, restored or switched over) or is gone. Matched by exact class: their subclasses
# (a lock timeout, an object in use) happen while a query runs and are not outages.
REFUSED_SESSION_ERRORS: Final = (
    asyncpg.ObjectNotInPrerequisiteStateError,
    asyncpg.InvalidCatalogNameError,
)


# Sent at connection time: only parameters poolers accept there (PgBouncer passes on
# application_name and TimeZone, and refuses every other one).
SERVER_SETTINGS: Final = {
    "application_name": "notifyd",
    "timezone": "UTC",
}
# Where prepared statements are kept (a connection of its own): a generic plan cached
# while a table was empty or never analyzed keeps a sequential scan forever on that
# connection; custom plans follow the table as it grows. Behind a transaction pooler every
# statement is prepared unnamed and planned once, with its values, so it needs no setting.
CUSTOM_PLANS: Final = "SET plan_cache_mode = force_custom_plan"
# asyncpg's default; 0 prepares every statement unnamed, again for each execution.
STATEMENT_CACHE_SIZE: Final = 100

PING: Final = "SELECT 1"


@asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    """Turn asyncpg's errors into notifyd's."""
    try:
        yield
    except asyncpg.ForeignKeyViolationError as exc:
        raise ConstraintViolationError(exc.constraint_name or "", str(exc)) from exc
    except asyncpg.IntegrityConstraintViolationError as exc:
        constraint = getattr(exc, "constraint_name", None) or ""
        raise ConstraintViolationError(constraint, str(exc)) from exc
    except (*CONNECTION_ERRORS, *REFUSED_SESSION_ERRORS) as exc:
        if not isinstance(exc, CONNECTION_ERRORS) and type(exc) not in REFUSED_SESSION_ERRORS:
            raise
        reason = type(exc).__name__
        if isinstance(exc, asyncpg.PostgresError):
            reason = f"{reason}: {exc}"  # the server's words, which never quote a password
        raise DatabaseUnavailableError(f"database unavailable: {reason}") from exc


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Return a connection to the pool as it is, without asyncpg's reset query.

    The default reset costs a round trip per query. notifyd's queries leave a session as
    they found it: no SET (but `CUSTOM_PLANS`, once, where sessions are kept), no LISTEN,
    cursors or session locks on pooled connections (the migration lock is a transaction's).
    asyncpg still rolls back a transaction left open.
    """


async def _setup_session(connection: asyncpg.Connection) -> None:
    """A new connection of a session of its own: codecs, and custom plans."""
    await codecs.register(connection)
    await connection.execute(CUSTOM_PLANS)


async def probe_route(url: str, pooler: PoolerSetting, connect_timeout: float) -> Route:
    """How `url` reaches PostgreSQL: connect once and look (or trust `pooler`)."""
    if pooler != "auto":
        return Route(pooler, detected=False)
    connection = await asyncpg.connect(
        url, timeout=connect_timeout, statement_cache_size=0, server_settings=SERVER_SETTINGS
    )
    try:
        return await route_of(connection, pooler)
    finally:
        await connection.close(timeout=connect_timeout)


class Pool:
    """One asyncpg pool; every query of notifyd goes through it."""

    def __init__(self, pool: asyncpg.Pool, route: Route, acquire_timeout: float = 10.0) -> None:
        self._pool = pool
        # Whether a pooler stands between, and whether sessions survive it.
        self.route = route
        # asyncpg waits for a free connection without end by default: a pool whose
        # connections are all held by queries the server does not answer would then hang
        # every caller, the dispatcher and the lease keeper included, for good.
        self._acquire_timeout = acquire_timeout

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
        pooler: PoolerSetting = "auto",
    ) -> Pool:
        """Connect; first find out (one connection) whether `url` reaches a pooler."""
        async with translate_errors():
            route = await probe_route(url, pooler, connect_timeout)
            keeps_sessions = route.keeps_sessions
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=connect_timeout,
                command_timeout=command_timeout,
                server_settings=SERVER_SETTINGS,
                # Behind a transaction pooler no statement may outlive its transaction:
                # asyncpg then prepares each one unnamed, in the same round trip as it runs.
                statement_cache_size=STATEMENT_CACHE_SIZE if keeps_sessions else 0,
                init=_setup_session if keeps_sessions else codecs.register,
                reset=_keep_session,
            )
        return cls(pool, route, acquire_timeout=connect_timeout + command_timeout)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        """A pooled connection that goes back to the pool only in a known state.

        Connections are returned without asyncpg's reset query (see `_keep_session`), and
        that query was also what noticed a connection left mid-operation by a timeout, a
        cancellation or a lost server. So a connection whose last operation ended in
        anything but an answer from the server (which leaves the session usable) is
        dropped here, and the next caller gets a fresh one.
        """
        async with self._pool.acquire(timeout=self._acquire_timeout) as connection:
            try:
                yield connection
            except asyncpg.PostgresError:
                raise
            except BaseException:
                # Already gone, and released by asyncpg, when the server closed it.
                with contextlib.suppress(asyncpg.InterfaceError):
                    connection.terminate()
                raise

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as connection:
            return await connection.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as connection:
            return await connection.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any, query_timeout: float | None = None) -> Any:
        async with self.acquire() as connection:
            return await connection.fetchval(query, *args, timeout=query_timeout)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as connection:
            return await connection.execute(query, *args)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        """A pooled connection with errors translated, for a transaction or the migrations."""
        async with translate_errors(), self.acquire() as connection:
            yield connection

    async def ping(self, query_timeout: float) -> None:
        """Raise `DatabaseUnavailableError` unless the database answers in time.

        The time covers getting a connection too: when the pooled ones are gone, opening
        a new one to a server that does not answer would wait out the connect timeout.
        """
        async with translate_errors(), asyncio.timeout(query_timeout):
            await self.fetchval(PING)


async def wait_for_database(
    connect: Callable[[], Awaitable[T]], deadline: float, on_retry: Callable[[str], None]
) -> T:
    """Connect, retrying with backoff until `deadline` (loop time) passes."""
    loop = asyncio.get_running_loop()
    delay = 0.2
    while True:
        try:
            return await connect()
        except DatabaseUnavailableError as exc:
            if loop.time() + delay > deadline:
                raise
            on_retry(str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
