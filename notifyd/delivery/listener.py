"""The session connection: wakes the dispatcher and shows this instance is alive.

It LISTENs for the wake-up channel and holds the instance's presence lock, and is kept
alive against every failure.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from uuid import UUID

from notifyd.db.listen import ListenConnection
from notifyd.delivery.timers import wait_for_event
from notifyd.errors import DatabaseUnavailableError
from notifyd.logs import get_logger

log = get_logger(__name__)
_RANDOM = random.Random()


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
        url: str,
        owner: UUID,
        wake: Callable[[], None],
        *,
        check_interval: float,
        connect_timeout: float,
        backoff_max: float,
        on_cancel: Callable[[int], None] | None = None,
    ) -> None:
        self._url = url
        self._on_cancel = on_cancel
        self._owner = owner
        self._wake = wake
        self._check_interval = check_interval
        self._connect_timeout = connect_timeout
        self._backoff_max = backoff_max
        self.connected = asyncio.Event()
        self.present = asyncio.Event()
        self.reconnects = 0
        self.backend_pid: int | None = None
        self._present_since: float | None = None

    def peers_settled(self) -> bool:
        """Whether a peer's missing presence lock means that peer is gone.

        True while this instance holds its own lock, except in the first `backoff_max`
        seconds after a reconnect: when the database itself restarted, every instance lost
        its lock and the others may not have reconnected yet.
        """
        if self._present_since is None:
            return False
        if self.reconnects == 0:
            return True
        return time.monotonic() - self._present_since >= self._backoff_max

    async def run(self) -> None:
        failures = 0
        ever_connected = False
        while True:
            try:
                connection = await ListenConnection.open(
                    self._url,
                    self._owner,
                    self._wake,
                    connect_timeout=self._connect_timeout,
                    on_cancel=self._on_cancel,
                )
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
                self._present_since = None
                self.backend_pid = None
                await connection.close()
            # Reconnect at once; back off only if that fails.
            log.warning("listener_lost", reason=reason)

    def _update_presence(self, connection: ListenConnection) -> None:
        if connection.present and not self.present.is_set():
            self._present_since = time.monotonic()
            self.present.set()
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
