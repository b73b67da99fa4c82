"""The session connection: wakes the dispatcher and shows this instance is alive.

It LISTENs for the wake-up channel and holds the instance's presence lock, and is kept
alive against every failure. Where no session of PostgreSQL's own can be had (only a
transaction pooler is configured, or the LISTEN URL turns out to reach one), it runs
poll-only: the dispatcher claims at each poll, and peers know this instance is alive by
its lease heartbeats alone.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final
from uuid import UUID

from notifyd.config import PoolerSetting
from notifyd.db.listen import ListenConnection, Place
from notifyd.delivery.timers import wait_for_event
from notifyd.errors import DatabaseUnavailableError, ListenDatabaseError, PooledSessionError
from notifyd.logs import get_logger

log = get_logger(__name__)
_RANDOM = random.Random()

# What /readyz says of the listener in poll-only mode, before the reason: ready, but
# woken by the poll alone.
POLL_ONLY: Final = "poll-only"
NO_LISTEN_URL: Final = (
    "database.url is a transaction pooler and database.listen_url is not set: no LISTEN "
    "and no presence lock; new notifications wait for the next poll"
)
LISTEN_URL_POOLED: Final = (
    "database.listen_url reaches a connection pooler, not PostgreSQL: point it at the "
    "server itself (LISTEN and the presence lock need a session of their own)"
)


class Listener:
    """Holds a dedicated LISTEN connection and calls `wake` on every notification.

    NOTIFY only wakes: on every (re)connect it wakes the dispatcher too, since anything
    inserted while it was away produced a notification nobody heard. Every
    `check_interval` seconds it asks the server whether the session still listens, so a
    connection that died silently (a proxy dropping it, a terminated backend) is noticed.

    `present` is set while the session holds the presence lock. The dispatcher claims only
    then: a notification leased by an instance without its lock is taken over by others.
    """

    def __init__(
        self,
        url: str | None,
        owner: UUID,
        wake: Callable[[], None],
        *,
        ping: Callable[[float], Awaitable[None]],
        check_interval: float,
        connect_timeout: float,
        backoff_max: float,
        pooler: PoolerSetting = "auto",
        poll_only: str | None = None,
        on_cancel: Callable[[int], None] | None = None,
        place: Callable[[], Awaitable[Place]] | None = None,
    ) -> None:
        """`url` None runs poll-only from the start, for the reason `poll_only` gives.

        `place` tells where the pool is: the session must be in the same database. It is
        asked at each connect, since where `database.url` leads may change under a
        running instance (a switchover to another cluster).
        """
        self._url = url
        self._place = place
        self._ping = ping
        self._pooler = pooler
        # Why there is no LISTEN session (None while there is one, or may be).
        self.poll_only = (poll_only or "no LISTEN session configured") if url is None else None
        self._on_cancel = on_cancel
        self._owner = owner
        self._wake = wake
        self._check_interval = check_interval
        self._connect_timeout = connect_timeout
        self._backoff_max = backoff_max
        self.connected = asyncio.Event()
        self.present = asyncio.Event()
        # Set while the instance may work: present, or poll-only. The lease keeper beats
        # while it is set; a heartbeat slowed down here would let peers take its work.
        self.working = asyncio.Event()
        self.reconnects = 0
        self.backend_pid: int | None = None
        self._present_since: float | None = None
        self._answered_before = False

    def may_claim(self) -> bool:
        """Whether the dispatcher may claim: present, or poll-only (heartbeats show it)."""
        return self.working.is_set()

    def peers_settled(self) -> bool:
        """Whether a peer's missing presence lock means that peer is gone.

        True while this instance holds its own lock, except in the first `backoff_max`
        seconds after a reconnect: when the database itself restarted, every instance lost
        its lock and the others may not have reconnected yet. Poll-only, where peers are
        known by their heartbeats alone, the same holds from when the database answers
        again: until then, every peer's heartbeat looks stale.
        """
        if self._present_since is None:
            return False
        if self.reconnects == 0:
            return True
        return time.monotonic() - self._present_since >= self._backoff_max

    async def run(self) -> None:
        if self._url is None:
            await self._poll_only()
            return
        failures = 0
        ever_connected = False
        while True:
            try:
                database = None if self._place is None else await self._place()
                connection = await ListenConnection.open(
                    self._url,
                    self._owner,
                    self._wake,
                    connect_timeout=self._connect_timeout,
                    pooler=self._pooler,
                    on_cancel=self._on_cancel,
                    database=database,
                )
            except PooledSessionError:
                # Not a passing failure: the configuration is wrong. Say so once, loudly,
                # and keep delivering on the poll.
                log.error("listener_pooled", error=LISTEN_URL_POOLED)
                self.poll_only = LISTEN_URL_POOLED
                await self._poll_only()
                return
            except ListenDatabaseError as exc:
                log.error("listener_wrong_database", error=str(exc))
                self.poll_only = str(exc)
                await self._poll_only()
                return
            except DatabaseUnavailableError as exc:
                failures += 1
                delay = self._backoff(failures)
                log.warning("listener_connect_failed", error=str(exc), retry_in=round(delay, 3))
                await asyncio.sleep(delay)
                continue
            if ever_connected:
                self.reconnects += 1
            ever_connected = True
            failures = 0
            self.backend_pid = connection.backend_pid()
            self.connected.set()
            self._update_presence(connection)
            log.info("listener_connected", backend_pid=self.backend_pid, present=connection.present)
            self._wake()
            try:
                reason = await self._watch(connection)
            finally:
                self.connected.clear()
                self.present.clear()
                self.working.clear()
                self._present_since = None
                self.backend_pid = None
                await connection.close()
            # Reconnect at once; back off only if that fails.
            log.warning("listener_lost", reason=reason)

    async def _poll_only(self) -> None:
        """No session: wake the dispatcher at start, and follow whether the database answers.

        That is what `peers_settled` needs; the dispatcher polls on its own.
        """
        self.working.set()
        self._wake()
        while True:
            try:
                await self._ping(self._connect_timeout)
            except DatabaseUnavailableError:
                self._present_since = None
            else:
                if self._present_since is None:
                    if self._answered_before:
                        self.reconnects += 1
                    self._answered_before = True
                    self._present_since = time.monotonic()
            await asyncio.sleep(self._check_interval)

    def _update_presence(self, connection: ListenConnection) -> None:
        if connection.present and not self.present.is_set():
            self._present_since = time.monotonic()
            self.present.set()
            self.working.set()
            self._wake()
        elif not connection.present:
            # Held by an older session of ours the server has not reaped yet: retried.
            log.warning("presence_lock_busy")

    async def _watch(self, connection: ListenConnection) -> str:
        """Return, with a reason, once the connection is no longer listening."""
        while True:
            if await wait_for_event(connection.terminated, self._check_interval):
                return "connection closed"
            try:
                if not await connection.is_listening(query_timeout=self._connect_timeout):
                    return "server no longer lists the channel"
                if not connection.present:
                    await connection.take_presence(self._connect_timeout)
                    self._update_presence(connection)
            except DatabaseUnavailableError as exc:
                return f"health check failed: {exc}"

    def _backoff(self, failures: int) -> float:
        ceiling = min(self._backoff_max, 0.1 * 2.0 ** min(failures, 16))
        return ceiling / 2 + _RANDOM.uniform(0, ceiling / 2)
