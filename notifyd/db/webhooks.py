"""The status event outbox (notifyd.webhook_events): take due events, settle them, prune.

Rows are written by a trigger in the transaction that sets a final status (sql/); here they
are only taken with a lease (FOR UPDATE SKIP LOCKED: instances never take the same one),
settled by the instance holding that lease, and pruned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from uuid import UUID

from notifyd.db.connection import Pool, translate_errors

# Due events, soonest first. Events older than `retry_for` are left alone: they were never
# sent while no endpoint was configured, and a new endpoint is not flooded with history.
TAKE: Final = """
    UPDATE notifyd.webhook_events AS e
    SET locked_by = $1,
        lease_expires_at = now() + make_interval(secs => $3),
        attempts = least(e.attempts, 2147483646) + 1
    WHERE e.id IN (
        SELECT id FROM notifyd.webhook_events
        WHERE status = 'pending' AND next_attempt_at <= now()
          AND created_at >= now() - make_interval(secs => $4)
          AND (lease_expires_at IS NULL OR lease_expires_at < now())
        ORDER BY next_attempt_at, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
    RETURNING e.id, e.type, e.notification_id, e.created_at, e.attempts, e.delivered_to
"""
# Delivered when every endpoint that wants it answered 2xx; failed when given up on (its
# notification is gone) or when the next try would come after `retry_for`; otherwise due
# again after `delay` seconds. Only by the holder.
SETTLE: Final = """
    WITH decided AS (
        SELECT e.id,
               CASE WHEN $4 THEN 'delivered'
                    WHEN $8 THEN 'failed'
                    WHEN e.created_at + make_interval(secs => $6)
                         <= now() + make_interval(secs => $5) THEN 'failed'
                    ELSE 'pending' END AS status
        FROM notifyd.webhook_events AS e
        WHERE e.id = $1 AND e.locked_by = $2
    )
    UPDATE notifyd.webhook_events AS e
    SET delivered_to = $3::text[],
        status = decided.status,
        next_attempt_at = CASE WHEN decided.status = 'pending'
                               THEN now() + make_interval(secs => $5)
                               ELSE e.next_attempt_at END,
        last_error = $7,
        finished_at = CASE WHEN decided.status = 'pending' THEN NULL ELSE now() END,
        locked_by = NULL,
        lease_expires_at = NULL
    FROM decided
    WHERE e.id = decided.id
    RETURNING e.status
"""
# Events still pending past `retry_for` (their last try decided to wait, or they were never
# sent: no endpoint was configured) are given up on, a batch at a time.
EXPIRE: Final = """
    UPDATE notifyd.webhook_events
    SET status = 'failed', finished_at = now(),
        last_error = coalesce(last_error, 'not sent within webhooks.retry_for')
    WHERE id IN (
        SELECT id FROM notifyd.webhook_events
        WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1)
          AND (lease_expires_at IS NULL OR lease_expires_at < now())
        ORDER BY next_attempt_at, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
"""
# At a stop: what this instance holds is due again at once, for any instance.
RELEASE: Final = """
    UPDATE notifyd.webhook_events
    SET locked_by = NULL, lease_expires_at = NULL
    WHERE locked_by = $1 AND status = 'pending'
"""
PRUNE: Final = """
    DELETE FROM notifyd.webhook_events
    WHERE id IN (
        SELECT id FROM notifyd.webhook_events
        WHERE created_at < now() - make_interval(secs => $1)
        ORDER BY created_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
"""
RECENT: Final = """
    SELECT id, type, notification_id, status, created_at, attempts, delivered_to, last_error,
           finished_at
    FROM notifyd.webhook_events
    ORDER BY id DESC
    LIMIT $1
"""


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """An event taken from the outbox to be sent."""

    id: int
    type: str
    notification_id: int
    created_at: datetime
    # Sends started so far, this one included.
    attempts: int
    # Keys of the endpoints that already answered 2xx.
    delivered_to: frozenset[str]

    @property
    def webhook_id(self) -> str:
        """The `webhook-id` header: the same at every retry, so receivers can de-duplicate."""
        return f"evt_{self.id}"


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event as the dashboard lists it."""

    id: int
    type: str
    notification_id: int
    status: str
    created_at: datetime
    attempts: int
    delivered_to: tuple[str, ...]
    last_error: str | None
    finished_at: datetime | None


class WebhookOutbox:
    """Take, settle and prune status events."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def take(
        self, owner: UUID, limit: int, lease_seconds: float, newer_than: float
    ) -> list[StatusEvent]:
        """Lease up to `limit` due events created in the last `newer_than` seconds."""
        async with translate_errors():
            found = await self._pool.fetch(TAKE, owner, limit, lease_seconds, newer_than)
        found.sort(key=lambda row: row["id"])
        return [
            StatusEvent(
                id=row["id"],
                type=row["type"],
                notification_id=row["notification_id"],
                created_at=row["created_at"],
                attempts=row["attempts"],
                delivered_to=frozenset(_keys(row["delivered_to"])),
            )
            for row in found
        ]

    async def settle(
        self,
        event_id: int,
        owner: UUID,
        *,
        delivered_to: Sequence[str],
        done: bool,
        delay: float,
        retry_for: float,
        error: str | None,
        give_up: bool = False,
    ) -> str | None:
        """Record a send; answer the event's status now (None: the lease was not ours)."""
        async with translate_errors():
            status: str | None = await self._pool.fetchval(
                SETTLE,
                event_id,
                owner,
                sorted(delivered_to),
                done,
                delay,
                retry_for,
                error,
                give_up,
            )
        return status

    async def expire(self, older_than: float, limit: int) -> int:
        """Mark failed up to `limit` events still pending `older_than` seconds after."""
        async with translate_errors():
            status = await self._pool.execute(EXPIRE, older_than, limit)
        return int(status.split()[-1])

    async def release(self, owner: UUID) -> None:
        """Hand back every event `owner` holds (at a stop)."""
        async with translate_errors():
            await self._pool.execute(RELEASE, owner)

    async def prune(self, older_than: float, limit: int) -> int:
        """Delete up to `limit` events created `older_than` seconds ago."""
        async with translate_errors():
            status = await self._pool.execute(PRUNE, older_than, limit)
        return int(status.split()[-1])

    async def recent(self, limit: int) -> list[EventRecord]:
        """The newest events, for the dashboard."""
        async with translate_errors():
            found = await self._pool.fetch(RECENT, limit)
        return [
            EventRecord(
                id=row["id"],
                type=row["type"],
                notification_id=row["notification_id"],
                status=row["status"],
                created_at=row["created_at"],
                attempts=row["attempts"],
                delivered_to=tuple(_keys(row["delivered_to"])),
                last_error=row["last_error"],
                finished_at=row["finished_at"],
            )
            for row in found
        ]


def _keys(stored: list[object] | None) -> list[str]:
    """The endpoint keys of `delivered_to`, whatever another application wrote there.

    The column is a text[] the schema leaves open: a NULL in it made the keys impossible to
    sort once the event was sent, so it was never settled and sent again at every lease;
    a 2-d array comes as nested lists. Neither names an endpoint.
    """
    return [key for key in stored or () if isinstance(key, str)]
