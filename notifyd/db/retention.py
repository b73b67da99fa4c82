"""Retention: the delete statements that keep the tables from growing without end (see
`Queue`, whose surface they are part of; `notifyd.delivery.retention` runs them)."""

from __future__ import annotations

from typing import Final

from notifyd.db.connection import Pool, translate_errors
from notifyd.db.webhooks import PRUNE as PRUNE_WEBHOOK_EVENTS

# In batches (the oldest first where an index keeps them in order); another instance pruning
# at once skips these rows.
PRUNE_NOTIFICATIONS: Final = """
    DELETE FROM notifyd.notifications
    WHERE id IN (
        SELECT id FROM notifyd.notifications
        WHERE finished_at < now() - make_interval(secs => $1)
        ORDER BY finished_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
"""
PRUNE_IDEMPOTENCY_KEYS: Final = """
    DELETE FROM notifyd.idempotency_keys
    WHERE (scope, key) IN (
        SELECT scope, key FROM notifyd.idempotency_keys
        WHERE created_at < now() - make_interval(secs => $1)
        ORDER BY created_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
"""
# Slots long past are forgotten: a key with no row starts with a free slot anyway.
PRUNE_PACING: Final = """
    DELETE FROM notifyd.pacing
    WHERE key IN (
        SELECT key FROM notifyd.pacing
        WHERE tat < now() - make_interval(secs => $1)
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
"""


class RetentionQueries:
    """Delete what is past keeping, a batch at a time."""

    _pool: Pool

    async def prune_notifications(self, older_than: float, limit: int) -> int:
        """Delete up to `limit` notifications finished `older_than` seconds ago."""
        return await self._delete(PRUNE_NOTIFICATIONS, older_than, limit)

    async def prune_idempotency_keys(self, older_than: float, limit: int) -> int:
        """Delete up to `limit` idempotency keys taken `older_than` seconds ago."""
        return await self._delete(PRUNE_IDEMPOTENCY_KEYS, older_than, limit)

    async def prune_webhook_events(self, older_than: float, limit: int) -> int:
        """Delete up to `limit` status events created `older_than` seconds ago."""
        return await self._delete(PRUNE_WEBHOOK_EVENTS, older_than, limit)

    async def prune_pacing(self, older_than: float, limit: int) -> int:
        """Delete up to `limit` sending slots that passed `older_than` seconds ago."""
        return await self._delete(PRUNE_PACING, older_than, limit)

    async def _delete(self, query: str, *args: object) -> int:
        async with translate_errors():
            status = await self._pool.execute(query, *args)
        return int(status.split()[-1])
