"""The LISTEN connection that wakes the dispatcher, kept alive against every failure."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from notifyd.exceptions import DatabaseUnavailableError
from notifyd.logs import get_logger
from notifyd.store import ListenConnection

log = get_logger(__name__)
_RANDOM = random.Random()


class Listener:
    """Holds a dedicated LISTEN connection and calls `wake` on every notification.

    NOTIFY only wakes: on every (re)connect it wakes the dispatcher too, since anything
    inserted while it was away produced a notification nobody heard. Every
    `check_interval` seconds it asks the server whether the session still listens, so a
    connection that died silently (a proxy dropping it, a terminated backend) is noticed.
    """

    def __init__(
        self,
        url: str,
        wake: Callable[[], None],
        *,
        check_interval: float,
        connect_timeout: float,
        backoff_max: float,
    ) -> None:
        self._url = url
        self._wake = wake
        self._check_interval = check_interval
        self._connect_timeout = connect_timeout
        self._backoff_max = backoff_max
        self.connected = asyncio.Event()
        self.reconnects = 0
        self._ever_connected = False
        self.backend_pid: int | None = None

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                connection = await ListenConnection.open(
                    self._url, self._wake, connect_timeout=self._connect_timeout
                )
            except DatabaseUnavailableError as exc:
                failures += 1
                delay = self._backoff(failures)
                log.warning("listener_connect_failed", error=str(exc), retry_in=round(delay, 3))
                await asyncio.sleep(delay)
                continue
            if self._ever_connected:
                self.reconnects += 1
            self._ever_connected = True
            failures = 0
            self.backend_pid = connection.backend_pid()
            self.connected.set()
            log.info("listener_connected", backend_pid=self.backend_pid)
            self._wake()
            try:
                reason = await self._watch(connection)
            finally:
                self.connected.clear()
                self.backend_pid = None
                await connection.close()
            # Reconnect at once; back off only if that fails.
            log.warning("listener_lost", reason=reason)

    async def _watch(self, connection: ListenConnection) -> str:
        """Return, with a reason, once the connection is no longer listening."""
        while True:
            try:
                await asyncio.wait_for(connection.terminated.wait(), self._check_interval)
                return "connection closed"
            except TimeoutError:
                pass
            try:
                if not await connection.is_listening(query_timeout=self._connect_timeout):
                    return "server no longer lists the channel"
            except DatabaseUnavailableError as exc:
                return f"health check failed: {exc}"

    def _backoff(self, failures: int) -> float:
        ceiling = min(self._backoff_max, 0.1 * 2.0 ** min(failures, 16))
        return ceiling / 2 + _RANDOM.uniform(0, ceiling / 2)
