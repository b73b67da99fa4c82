"""What the delivery pipeline needs of the database, and nothing more.

`notifyd.db.Queue` is the real one; the tests' in-memory queue is another, so the
dispatcher, the actors and the recorder can be tested without PostgreSQL as well as with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from notifyd.domain import (
    Attempt,
    AttemptRecord,
    Channel,
    ClaimedNotification,
    Recorded,
    Status,
)


class DeliveryStore(Protocol):
    """The queue's surface: claims, the attempt log, leases and retention.

    Every method raises `DatabaseUnavailableError` when the database cannot be reached.
    """

    async def ping(self, query_timeout: float) -> None:
        """Return once the database answers; raise if it does not within the timeout."""

    async def claim(
        self, limit: int, owner: UUID, lease_seconds: float
    ) -> list[ClaimedNotification]:
        """Lease up to `limit` due notifications to `owner`, in the order to deliver them."""

    async def attempts(self, notification_ids: Sequence[int]) -> dict[int, list[Attempt]]:
        """The attempt log of each notification, oldest first."""

    async def record_attempts(
        self, owner: UUID, entries: Sequence[tuple[AttemptRecord, Status | None]]
    ) -> Recorded:
        """Write attempts (and final statuses) where `owner` holds the lease.

        Answers which were not written, and which ended `cancelled` instead.
        """

    async def finish_without_attempt(
        self, notification_id: int, owner: UUID, status: Status = Status.FAILED
    ) -> bool:
        """Set a final status with no attempt (a resumed delivery with nothing left to try)."""

    async def finish_cancelled(self, notification_id: int, owner: UUID) -> str:
        """End it `cancelled` if a cancel was asked for: 'cancelled', 'not_asked' (held,
        no cancel) or 'not_held' (not `owner`'s)."""

    async def cancel_requested(self, owner: UUID, notification_ids: Sequence[int]) -> set[int]:
        """Which of these, held by `owner`, someone asked to cancel."""

    async def extend_leases(
        self,
        owner: UUID,
        notification_ids: Sequence[int],
        lease_seconds: float,
        renewed_within: float = 0.0,
    ) -> set[int]:
        """Renew `owner`'s leases, except those claimed or renewed in `renewed_within` s;
        answer the ids whose lease holds that long (not those another transaction held
        locked, or no longer `owner`'s)."""

    async def release(self, owner: UUID, unfinished: Sequence[tuple[int, datetime]]) -> None:
        """Hand leased notifications back to the queue: (id, claimable from) pairs."""

    async def defer(self, owner: UUID, notification_id: int, seconds: float) -> None:
        """Hand a leased notification back to the queue, claimable `seconds` from now
        (by the database's clock)."""

    async def requeue_expired(self, limit: int = 1000) -> int:
        """Make notifications whose lease ran out claimable again."""

    async def requeue_orphaned(self, owner: UUID, silent_for: float, limit: int = 1000) -> int:
        """Make claimable again what instances that are gone held."""

    async def prune_notifications(self, older_than: float, limit: int) -> int:
        """Delete up to `limit` notifications finished `older_than` seconds ago."""

    async def prune_idempotency_keys(self, older_than: float, limit: int) -> int:
        """Delete up to `limit` idempotency keys taken `older_than` seconds ago."""

    async def prune_webhook_events(self, older_than: float, limit: int) -> int:
        """Delete up to `limit` status events created `older_than` seconds ago."""

    async def prune_pacing(self, older_than: float, limit: int) -> int:
        """Delete up to `limit` sending slots that passed `older_than` seconds ago."""

    async def reserve_slot(
        self,
        channel_key: str | None,
        channel_interval: float,
        recipient_key: str | None,
        recipient_interval: float,
        horizon: float,
    ) -> tuple[bool, float]:
        """Take the next sending slot of a channel and a recipient if within `horizon` s.

        Returns (taken, seconds until the slot).
        """

    async def pause_slot(self, key: str, seconds: float) -> None:
        """Give no slot of `key` for `seconds` (a vendor said "retry after")."""

    async def suppress(self, user_id: int, channel: Channel, contact: str, reason: str) -> bool:
        """Record that `contact` can never be reached on `channel`.

        False when the user no longer has that contact: nothing is recorded.
        """
