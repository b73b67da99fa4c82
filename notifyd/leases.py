"""Leases: renew this instance's, and requeue those whose owner stopped renewing them."""

from __future__ import annotations

import asyncio
from uuid import UUID

from notifyd.exceptions import DatabaseUnavailableError
from notifyd.inflight import InFlight
from notifyd.logs import get_logger
from notifyd.store import Store

log = get_logger(__name__)


class LeaseKeeper:
    """Every third of a lease: extend the leases held in memory, requeue expired ones.

    Only the ids this instance still holds are renewed, so a delivery dropped from memory
    (a write that never got through) expires and is picked up again.
    """

    def __init__(
        self, store: Store, owner: UUID, in_flight: InFlight, *, lease_seconds: float
    ) -> None:
        self._store = store
        self._owner = owner
        self._in_flight = in_flight
        self._lease_seconds = lease_seconds

    async def run(self) -> None:
        interval = self._lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            await self.tick()

    async def tick(self) -> None:
        try:
            held = self._in_flight.ids()
            if held:
                await self._store.extend_leases(self._owner, held, self._lease_seconds)
            requeued = await self._store.requeue_expired()
        except DatabaseUnavailableError as exc:
            log.warning("lease_renewal_failed", error=str(exc))
            return
        if requeued:
            log.warning("expired_leases_requeued", count=requeued)
