"""Leases: renew this instance's, and take back those of instances that stopped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from uuid import UUID

from notifyd.exceptions import DatabaseUnavailableError
from notifyd.inflight import InFlight
from notifyd.logs import get_logger
from notifyd.store import Store

log = get_logger(__name__)


class LeaseKeeper:
    """Every third of a lease: extend the leases held in memory, requeue abandoned ones.

    Only the ids this instance still holds are renewed, so a delivery dropped from memory
    (a write that never got through) expires and is picked up again. Abandoned means an
    expired lease, or a lease held by an instance whose presence lock is gone (it died):
    that is taken back at once, so a restart does not wait out its own old leases.
    """

    def __init__(
        self,
        store: Store,
        owner: UUID,
        in_flight: InFlight,
        *,
        lease_seconds: float,
        present: asyncio.Event,
        peers_settled: Callable[[], bool],
    ) -> None:
        self._store = store
        self._owner = owner
        self._in_flight = in_flight
        self._lease_seconds = lease_seconds
        self._present = present
        self._peers_settled = peers_settled
        # Completed rounds, for tests that wait for one.
        self.ticks = 0

    async def run(self) -> None:
        interval = self._lease_seconds / 3
        while True:
            # The first round as soon as this instance is present: orphans of a previous
            # run of it are then taken back within moments of a restart.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._present.wait(), interval)
            await self.tick()
            await asyncio.sleep(interval)

    async def tick(self) -> None:
        try:
            held = self._in_flight.ids()
            if held:
                await self._store.extend_leases(self._owner, held, self._lease_seconds)
            expired = await self._store.requeue_expired()
            orphaned = 0
            if self._peers_settled():
                orphaned = await self._store.requeue_orphaned(self._owner)
        except DatabaseUnavailableError as exc:
            log.warning("lease_renewal_failed", error=str(exc))
            return
        finally:
            self.ticks += 1
        if expired:
            log.warning("expired_leases_requeued", count=expired)
        if orphaned:
            log.warning("orphaned_leases_requeued", count=orphaned)
