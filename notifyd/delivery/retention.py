"""Retention: delete old finished notifications, idempotency keys, status events and
sending slots, a batch at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from notifyd.delivery.store import DeliveryStore
from notifyd.errors import DatabaseUnavailableError
from notifyd.logs import get_logger

log = get_logger(__name__)

# A store's prune method: (older than seconds, batch size) -> rows deleted.
Delete = Callable[[float, int], Awaitable[int]]

DAY = 86400.0
# A breather between batches, so pruning a large backlog never hogs the database.
PAUSE_BETWEEN_BATCHES = 0.05


class Pruner:
    """Every `interval` seconds, delete what is older than its retention.

    Small batches with SKIP LOCKED: every instance may prune at the same time, and no
    statement holds many row locks or runs long.
    """

    def __init__(
        self,
        store: DeliveryStore,
        *,
        days: float,
        idempotency_key_seconds: float,
        interval: float,
        batch_size: int,
        webhook_retry_for: float = DAY,
    ) -> None:
        self._store = store
        self._keep_seconds = days * DAY
        # Status events are kept as long as notifications, and never pruned while they may
        # still be retried.
        self._event_keep_seconds = max(days * DAY, webhook_retry_for) if days > 0 else 0.0
        self._idempotency_key_seconds = idempotency_key_seconds
        self._interval = interval
        self._batch_size = batch_size
        # Rows deleted so far, by table (a metric).
        self.pruned = {"notifications": 0, "idempotency_keys": 0, "webhook_events": 0}

    async def run(self) -> None:
        while True:
            try:
                await self.prune()
            except DatabaseUnavailableError as exc:
                log.warning("prune_failed", error=str(exc))
            await asyncio.sleep(self._interval)

    async def prune(self) -> tuple[int, int]:
        """Delete everything due; return (notifications, idempotency keys) deleted."""
        notifications = 0
        if self._keep_seconds > 0:
            notifications = await self._drain(self._store.prune_notifications, self._keep_seconds)
        keys = await self._drain(self._store.prune_idempotency_keys, self._idempotency_key_seconds)
        events = 0
        if self._event_keep_seconds > 0:
            events = await self._drain(self._store.prune_webhook_events, self._event_keep_seconds)
        # Sending slots an hour past hold nothing any more.
        await self._drain(self._store.prune_pacing, 3600.0)
        self.pruned["notifications"] += notifications
        self.pruned["idempotency_keys"] += keys
        self.pruned["webhook_events"] += events
        if notifications or keys or events:
            log.info(
                "pruned", notifications=notifications, idempotency_keys=keys, webhook_events=events
            )
        return notifications, keys

    async def _drain(self, delete: Delete, older_than: float) -> int:
        total = 0
        while True:
            deleted = await delete(older_than, self._batch_size)
            total += deleted
            if deleted < self._batch_size:
                return total
            await asyncio.sleep(PAUSE_BETWEEN_BATCHES)
