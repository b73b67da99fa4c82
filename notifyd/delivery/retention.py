"""Retention: delete old finished notifications and old idempotency keys, a batch at a time."""

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
    ) -> None:
        self._store = store
        self._keep_seconds = days * DAY
        self._idempotency_key_seconds = idempotency_key_seconds
        self._interval = interval
        self._batch_size = batch_size
        # Rows deleted so far, by table (a metric).
        self.pruned = {"notifications": 0, "idempotency_keys": 0}

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
        self.pruned["notifications"] += notifications
        self.pruned["idempotency_keys"] += keys
        if notifications or keys:
            log.info("pruned", notifications=notifications, idempotency_keys=keys)
        return notifications, keys

    async def _drain(self, delete: Delete, older_than: float) -> int:
        total = 0
        while True:
            deleted = await delete(older_than, self._batch_size)
            total += deleted
            if deleted < self._batch_size:
                return total
            await asyncio.sleep(PAUSE_BETWEEN_BATCHES)
