"""Leases: renew this instance's, and take back those of instances that stopped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from uuid import UUID

from notifyd.delivery.inflight import InFlight
from notifyd.delivery.store import DeliveryStore
from notifyd.delivery.timers import wait_for_event
from notifyd.errors import DatabaseUnavailableError
from notifyd.logs import get_logger

log = get_logger(__name__)


# The heartbeat: how often leases are renewed (a third of the lease if that is shorter).
HEARTBEAT_MAX = 2.0
# Heartbeats an instance may miss before its leases count as abandoned.
MISSED_HEARTBEATS = 3


def heartbeat_interval(lease_seconds: float) -> float:
    """How often leases are renewed: a third of the lease, at most `HEARTBEAT_MAX`."""
    return min(lease_seconds / 3, HEARTBEAT_MAX)


class LeaseKeeper:
    """Every heartbeat: extend the leases held in memory, requeue abandoned ones.

    Only the ids this instance still holds are renewed, so a delivery dropped from memory
    (a write that never got through) expires and is picked up again. Abandoned means an
    expired lease, or one whose instance is gone: no presence lock (its session ended) and
    no heartbeat for a few beats. Those are taken back within seconds, so neither a peer
    nor a restart waits out the lease of a crashed instance; an instance that only lost its
    session connection keeps its work as long as it keeps renewing.
    """

    def __init__(
        self,
        store: DeliveryStore,
        owner: UUID,
        in_flight: InFlight,
        *,
        lease_seconds: float,
        present: asyncio.Event,  # set while the instance may work (see Listener.working)
        peers_settled: Callable[[], bool],
    ) -> None:
        self._store = store
        self._owner = owner
        self._in_flight = in_flight
        self._lease_seconds = lease_seconds
        self._present = present
        self._peers_settled = peers_settled
        # Rounds that reached the database: an instance alive to its peers (a metric).
        self.heartbeats = 0

    @property
    def interval(self) -> float:
        return heartbeat_interval(self._lease_seconds)

    async def run(self) -> None:
        interval = self.interval
        while True:
            # The first round as soon as this instance is present: orphans of a previous
            # run of it are then taken back within moments of a restart.
            await wait_for_event(self._present, interval)
            await self.tick()
            await asyncio.sleep(interval)

    async def tick(self) -> None:
        try:
            held = self._in_flight.ids()
            if held:
                renewed_within = self.interval / 2
                sent = time.monotonic()
                renewed = await self._store.extend_leases(
                    self._owner, held, self._lease_seconds, renewed_within=renewed_within
                )
                # Rows claimed or renewed within `renewed_within` were left as they were:
                # their lease ends no earlier than this. A row another transaction held
                # locked was not renewed, and its lease in memory runs on to its end.
                self._in_flight.leases_renewed(
                    sorted(renewed), until=sent - renewed_within + self._lease_seconds
                )
                # A cancel's NOTIFY may have been missed (the LISTEN session was away).
                cancelled = await self._store.cancel_requested(self._owner, held)
                if cancelled:
                    self._in_flight.cancel_requested(sorted(cancelled))
            expired = await self._store.requeue_expired()
            orphaned = 0
            if self._peers_settled():
                orphaned = await self._store.requeue_orphaned(
                    self._owner, silent_for=MISSED_HEARTBEATS * self.interval
                )
        except DatabaseUnavailableError as exc:
            log.warning("lease_renewal_failed", error=str(exc))
            return
        self.heartbeats += 1
        if expired:
            log.warning("expired_leases_requeued", count=expired)
        if orphaned:
            log.warning("orphaned_leases_requeued", count=orphaned)
