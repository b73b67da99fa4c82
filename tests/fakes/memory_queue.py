"""An in-memory queue with the surface the delivery pipeline uses (`DeliveryStore`).

It keeps the rules that matter to the pipeline: claims take due pending rows by priority,
due time and id, and lease them; attempts and final statuses are written only where the
writer holds the lease; released rows wait until their time. It can be made to fail
(`down`: every call raises DatabaseUnavailableError, as an outage does) or to hang
(`hang()`: every call waits until `answer()`, as a partition does), so the dispatcher,
the actors and the recorder can be tested without PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from notifyd.domain import (
    Attempt,
    AttemptRecord,
    Channel,
    ClaimedNotification,
    Recipient,
    Recorded,
    Status,
)
from notifyd.errors import DatabaseUnavailableError


@dataclass
class Row:
    id: int
    recipient: Recipient
    channels: tuple[Channel, ...]
    subject: str = ""
    message: str = "hello"
    priority: int = 0
    status: Status = Status.PENDING
    run_after: datetime = field(default_factory=lambda: datetime.now(UTC))
    locked_by: UUID | None = None
    lease_expires_at: datetime | None = None
    claims: int = 0
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    cancel_requested: bool = False
    round: int = 1


class MemoryQueue:
    """A `DeliveryStore` over dicts; `calls` counts every method called."""

    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self.attempt_log: list[Attempt] = []
        self.down = False
        self._answering = asyncio.Event()
        self._answering.set()
        self._ids = itertools.count(1)
        self._attempt_ids = itertools.count(1)
        self.calls: dict[str, int] = {}
        # Pacing: each key's next free slot (monotonic seconds), and every slot taken.
        self.slots: dict[str, float] = {}
        self.reserved: list[tuple[str | None, str | None, float]] = []
        self.suppressions: dict[tuple[int, Channel], tuple[str, str]] = {}

    # Arranging

    def add(
        self,
        channels: Sequence[Channel] = (Channel.SMS,),
        *,
        priority: int = 0,
        recipient: Recipient | None = None,
        run_after: datetime | None = None,
    ) -> int:
        notification_id = next(self._ids)
        self.rows[notification_id] = Row(
            id=notification_id,
            recipient=recipient
            or Recipient(
                user_id=1, email="ivan@example.com", phone="+79001234567", telegram_chat_id="42"
            ),
            channels=tuple(channels),
            priority=priority,
            run_after=run_after or datetime.now(UTC),
        )
        return notification_id

    def hang(self) -> None:
        """From now on every call waits, unanswered, until `answer()`."""
        self._answering.clear()

    def answer(self) -> None:
        self._answering.set()

    def suppressed_of(self, user_id: int) -> list[Channel]:
        return [channel for (user, channel) in self.suppressions if user == user_id]

    def attempts_of(self, notification_id: int) -> list[Attempt]:
        return [a for a in self.attempt_log if a.notification_id == notification_id]

    async def _call(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        await self._answering.wait()
        if self.down:
            raise DatabaseUnavailableError("database unavailable: the test took it down")

    # DeliveryStore

    async def ping(self, query_timeout: float) -> None:
        await self._call("ping")

    async def claim(
        self, limit: int, owner: UUID, lease_seconds: float
    ) -> list[ClaimedNotification]:
        await self._call("claim")
        now = datetime.now(UTC)
        due = sorted(
            (r for r in self.rows.values() if r.status == Status.PENDING and r.run_after <= now),
            key=lambda r: (-r.priority, r.run_after, r.id),
        )[:limit]
        for row in due:
            row.status = Status.PROCESSING
            row.locked_by = owner
            row.lease_expires_at = now + timedelta(seconds=lease_seconds)
            row.claims += 1
        return [
            ClaimedNotification(
                id=row.id,
                recipient=row.recipient,
                subject=row.subject,
                message=row.message,
                channels=row.channels,
                created=row.created_at.timestamp(),
                claims=row.claims,
                priority=row.priority,
                suppressed=frozenset(self.suppressed_of(row.recipient.user_id)),
                round=row.round,
            )
            for row in due
        ]

    async def attempts(self, notification_ids: Sequence[int]) -> dict[int, list[Attempt]]:
        await self._call("attempts")
        return {nid: self.attempts_of(nid) for nid in notification_ids}

    async def record_attempts(
        self, owner: UUID, entries: Sequence[tuple[AttemptRecord, Status | None]]
    ) -> Recorded:
        await self._call("record_attempts")
        not_written = set()
        cancelled = set()
        for record, final in entries:
            row = self.rows.get(record.notification_id)
            if row is None or row.locked_by != owner or row.status != Status.PROCESSING:
                not_written.add(record.notification_id)
                continue
            self.attempt_log.append(
                Attempt(
                    id=next(self._attempt_ids),
                    notification_id=record.notification_id,
                    channel=record.channel,
                    attempt=record.attempt,
                    status=record.status,
                    error=record.error,
                    transient=record.transient,
                    provider_response=record.provider_response,
                    started_at=datetime.fromtimestamp(record.started_at, UTC),
                    finished_at=datetime.fromtimestamp(record.finished_at, UTC),
                    round=record.round,
                )
            )
            # As sql/0005_lifecycle.sql: a cancel asked for ends it, unless it was sent.
            if row.cancel_requested and final != Status.SENT:
                final = Status.CANCELLED
                cancelled.add(row.id)
            if final is not None:
                row.status = final
                row.locked_by = None
                row.lease_expires_at = None
        return Recorded(not_written, cancelled)

    async def finish_without_attempt(
        self, notification_id: int, owner: UUID, status: Status = Status.FAILED
    ) -> bool:
        await self._call("finish_without_attempt")
        row = self.rows.get(notification_id)
        if row is None or row.locked_by != owner or row.status != Status.PROCESSING:
            return False
        row.status, row.locked_by, row.lease_expires_at = status, None, None
        return True

    async def finish_cancelled(self, notification_id: int, owner: UUID) -> str:
        await self._call("finish_cancelled")
        row = self.rows.get(notification_id)
        if row is None or row.locked_by != owner or row.status != Status.PROCESSING:
            return "not_held"
        if not row.cancel_requested:
            return "not_asked"
        row.status, row.locked_by, row.lease_expires_at = Status.CANCELLED, None, None
        return "cancelled"

    async def cancel_requested(self, owner: UUID, notification_ids: Sequence[int]) -> set[int]:
        await self._call("cancel_requested")
        return {
            nid
            for nid in notification_ids
            if (row := self.rows.get(nid)) is not None
            and row.locked_by == owner
            and row.cancel_requested
        }

    async def extend_leases(
        self,
        owner: UUID,
        notification_ids: Sequence[int],
        lease_seconds: float,
        renewed_within: float = 0.0,
    ) -> set[int]:
        await self._call("extend_leases")
        until = datetime.now(UTC) + timedelta(seconds=lease_seconds)
        renewed = set()
        for notification_id in notification_ids:
            row = self.rows.get(notification_id)
            if row is not None and row.locked_by == owner and row.status == Status.PROCESSING:
                row.lease_expires_at = until
                renewed.add(notification_id)
        return renewed

    async def release(self, owner: UUID, unfinished: Sequence[tuple[int, datetime]]) -> None:
        await self._call("release")
        for notification_id, run_after in unfinished:
            row = self.rows.get(notification_id)
            if row is not None and row.locked_by == owner and row.status == Status.PROCESSING:
                row.status, row.locked_by, row.lease_expires_at = Status.PENDING, None, None
                row.run_after = max(row.run_after, run_after)

    async def defer(self, owner: UUID, notification_id: int, seconds: float) -> None:
        await self._call("defer")
        row = self.rows.get(notification_id)
        if row is not None and row.locked_by == owner and row.status == Status.PROCESSING:
            row.status, row.locked_by, row.lease_expires_at = Status.PENDING, None, None
            row.run_after = max(row.run_after, datetime.now(UTC) + timedelta(seconds=seconds))

    async def requeue_expired(self, limit: int = 1000) -> int:
        await self._call("requeue_expired")
        now = datetime.now(UTC)
        expired = [
            r
            for r in self.rows.values()
            if r.status == Status.PROCESSING
            and r.lease_expires_at is not None
            and r.lease_expires_at < now
        ][:limit]
        for row in expired:
            row.status, row.locked_by, row.lease_expires_at = Status.PENDING, None, None
        return len(expired)

    async def requeue_orphaned(self, owner: UUID, silent_for: float, limit: int = 1000) -> int:
        await self._call("requeue_orphaned")
        return 0  # no other instances live in memory

    async def prune_notifications(self, older_than: float, limit: int) -> int:
        await self._call("prune_notifications")
        return 0

    async def prune_idempotency_keys(self, older_than: float, limit: int) -> int:
        await self._call("prune_idempotency_keys")
        return 0

    async def prune_webhook_events(self, older_than: float, limit: int) -> int:
        await self._call("prune_webhook_events")
        return 0

    async def prune_pacing(self, older_than: float, limit: int) -> int:
        await self._call("prune_pacing")
        return 0

    async def reserve_slot(
        self,
        channel_key: str | None,
        channel_interval: float,
        recipient_key: str | None,
        recipient_interval: float,
        horizon: float,
    ) -> tuple[bool, float]:
        await self._call("reserve_slot")
        now = time.monotonic()
        keys = [
            (key, interval)
            for key, interval in (
                (channel_key, channel_interval),
                (recipient_key, recipient_interval),
            )
            if key is not None and interval > 0
        ]
        slot = max([now, *(self.slots.get(key, now) for key, _ in keys)])
        wait = slot - now
        if wait > horizon:
            return False, wait
        for key, interval in keys:
            self.slots[key] = slot + interval
        self.reserved.append((channel_key, recipient_key, slot))
        return True, wait

    async def pause_slot(self, key: str, seconds: float) -> None:
        await self._call("pause_slot")
        self.slots[key] = max(self.slots.get(key, 0.0), time.monotonic() + seconds)

    async def suppress(self, user_id: int, channel: Channel, contact: str, reason: str) -> bool:
        await self._call("suppress")
        self.suppressions[(user_id, channel)] = (contact, reason)
        return True
