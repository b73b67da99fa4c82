"""The session connection: LISTEN for wake-ups, and the presence lock of this instance."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from uuid import UUID

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from notifyd.config import PoolerSetting
from notifyd.db.connection import CONNECTION_ERRORS, translate_errors
from notifyd.db.pooler import reaches_postgres
from notifyd.errors import ListenDatabaseError, PooledSessionError

# Channel PostgreSQL NOTIFY wakes the dispatcher on; the payload is constant on purpose.
WAKE_CHANNEL: Final = "notifyd_wakeup"
# Channel notifyd.cancel() names a notification on whose cancel its holder must act.
CANCEL_CHANNEL: Final = "notifyd_cancel"
# First key of the session advisory lock each running instance holds ("noti" in ASCII); the
# second is derived from the instance id (notifyd.instance_lock_key() in sql/).
PRESENCE_LOCK_NAMESPACE: Final = 0x6E6F7469

TAKE_PRESENCE: Final = "SELECT pg_try_advisory_lock($1, notifyd.instance_lock_key($2))"
CURRENT_DATABASE: Final = "SELECT current_database()"
IN_RECOVERY: Final = "SELECT pg_is_in_recovery()"
# Which cluster: initdb's random number, the same on a physical standby, another elsewhere.
SYSTEM_IDENTIFIER: Final = "SELECT system_identifier FROM pg_control_system()"
# Why the LISTEN session must be in the pool's database, and on the primary.
LISTEN_ELSEWHERE: Final = (
    "NOTIFY and the presence locks are per database, so it must name the same one"
)
LISTEN_STANDBY: Final = (
    "database.listen_url reaches a standby (in recovery), which refuses LISTEN and hears "
    "no NOTIFY: point it at the primary that database.url reaches"
)
IS_LISTENING: Final = "SELECT $1 = ANY(ARRAY(SELECT pg_listening_channels()))"


async def _refuse_pooler(connection: asyncpg.Connection, pooler: PoolerSetting) -> None:
    """Raise `PooledSessionError` if `connection` reaches a pooler not said to keep sessions."""
    if pooler in ("auto", "transaction") and not await reaches_postgres(connection):
        raise PooledSessionError(
            "the LISTEN session's URL reaches a connection pooler, not PostgreSQL"
        )


@dataclass(frozen=True, slots=True)
class Place:
    """Which database a session is in: its name, and its server's system identifier."""

    name: str
    # None where the server does not let this role read it.
    system_identifier: int | None


async def place_of(
    connection: asyncpg.Connection | PoolConnectionProxy[asyncpg.Record],
) -> Place:
    """Where `connection` (a connection or a pooled one) is."""
    name: str = await connection.fetchval(CURRENT_DATABASE)
    try:
        system_identifier: int | None = await connection.fetchval(SYSTEM_IDENTIFIER)
    except asyncpg.PostgresError:
        # Not for this role, or not on this server (a hosted PostgreSQL may lack or refuse
        # pg_control_system()): the database's name alone is compared.
        system_identifier = None
    return Place(name, system_identifier)


async def _refuse_other_database(connection: asyncpg.Connection, database: Place | None) -> None:
    """Raise `ListenDatabaseError` unless `connection` is on a primary, in `database`.

    `database` None: any database.
    """
    in_recovery = await connection.fetchval(IN_RECOVERY)
    if in_recovery:
        # A read replica's endpoint given by mistake: LISTEN fails there, and NOTIFY is
        # sent on the primary only.
        raise ListenDatabaseError(LISTEN_STANDBY)
    if database is None:
        return
    # NOTIFY and the presence locks of peers are per database: wake-ups would never come,
    # and peers would find no lock of this instance.
    found = await place_of(connection)
    if found.name != database.name:
        raise ListenDatabaseError(
            f"database.listen_url names database {found.name!r}, database.url "
            f"{database.name!r}: {LISTEN_ELSEWHERE}"
        )
    if None not in (found.system_identifier, database.system_identifier) and (
        found.system_identifier != database.system_identifier
    ):
        raise ListenDatabaseError(
            f"database.listen_url reaches another server than database.url (system "
            f"identifier {found.system_identifier}, not {database.system_identifier}): "
            f"{LISTEN_ELSEWHERE}"
        )


async def probe_listen_session(
    url: str, pooler: PoolerSetting, connect_timeout: float, database: Place | None = None
) -> None:
    """Connect to `url` as the listener would, and leave; raise what it would meet.

    `PooledSessionError` when it reaches a pooler, `DatabaseUnavailableError` when nothing
    answers.
    """
    async with translate_errors():
        connection = await asyncpg.connect(
            url,
            timeout=connect_timeout,
            statement_cache_size=0,
            server_settings={"application_name": "notifyd-check"},
        )
        try:
            await _refuse_pooler(connection, pooler)
            await _refuse_other_database(connection, database)
        finally:
            await connection.close(timeout=connect_timeout)


class ListenConnection:
    """A dedicated connection: LISTENs for wake-ups and holds this instance's presence lock.

    The presence lock is what tells other instances this one is alive; PostgreSQL drops it
    when the session ends, whether the process exited, crashed or lost its connection.
    """

    def __init__(self, connection: asyncpg.Connection, owner: UUID) -> None:
        self._connection = connection
        self._owner = owner
        self.present = False
        self.terminated = asyncio.Event()
        connection.add_termination_listener(lambda _conn: self.terminated.set())

    @classmethod
    async def open(
        cls,
        url: str,
        owner: UUID,
        on_notify: Callable[[], None],
        connect_timeout: float,
        pooler: PoolerSetting = "auto",
        on_cancel: Callable[[int], None] | None = None,
        database: Place | None = None,
    ) -> ListenConnection:
        """Connect, LISTEN and take the presence lock.

        Raises `PooledSessionError` when `url` reaches a pooler (and `pooler` does not say
        it keeps sessions): LISTEN there would end with the transaction, silently, and the
        lock would stay with a server connection others use. Raises `ListenDatabaseError`
        when it is in another database than `database` (or on another server), or on a
        standby.
        """
        async with translate_errors():
            connection = await asyncpg.connect(
                url,
                timeout=connect_timeout,
                statement_cache_size=0,
                server_settings={"application_name": "notifyd-listener"},
            )
            listen = cls(connection, owner)
            try:
                await _refuse_pooler(connection, pooler)
                await _refuse_other_database(connection, database)
                await connection.add_listener(WAKE_CHANNEL, lambda *_: on_notify())
                if on_cancel is not None:
                    await connection.add_listener(
                        CANCEL_CHANNEL, lambda *args: _cancelled(on_cancel, args[-1])
                    )
                await listen.take_presence(connect_timeout)
            except BaseException:
                connection.terminate()
                raise
        return listen

    async def take_presence(self, query_timeout: float) -> bool:
        """Take the presence lock unless this session holds it already; return whether held.

        It can be held by an older session of this instance that the server has not yet
        noticed is gone; then it is tried again at the next check.
        """
        if not self.present:
            async with translate_errors():
                self.present = await self._connection.fetchval(
                    TAKE_PRESENCE, PRESENCE_LOCK_NAMESPACE, self._owner, timeout=query_timeout
                )
        return self.present

    async def is_listening(self, query_timeout: float) -> bool:
        """Ask the server whether this session still listens (catches a silent death)."""
        if self._connection.is_closed():
            return False
        async with translate_errors():
            listening: bool = await self._connection.fetchval(
                IS_LISTENING, WAKE_CHANNEL, timeout=query_timeout
            )
        return listening

    def backend_pid(self) -> int:
        return self._connection.get_server_pid()

    async def close(self) -> None:
        if self._connection.is_closed():
            return
        try:
            await asyncio.wait_for(self._connection.close(), timeout=2)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError):
            self._connection.terminate()


def _cancelled(on_cancel: Callable[[int], None], payload: object) -> None:
    # Anyone may NOTIFY this channel: a payload that is not an id is ignored.
    text = str(payload)
    if text.isascii() and text.isdigit() and len(text) <= 19:
        on_cancel(int(text))
