"""The queue as the delivery pipeline sees it: claims, attempt writes, leases, and (from
`retention.py` and `slots.py`) retention and pacing.

`Queue` is the one surface `notifyd.delivery` uses (see `DeliveryStore` there); nothing
else in the pipeline reaches the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from notifyd.db import rows
from notifyd.db.codecs import json_text
from notifyd.db.connection import Pool, translate_errors
from notifyd.db.listen import WAKE_CHANNEL
from notifyd.db.notifications import fetch_attempts
from notifyd.db.retention import RetentionQueries
from notifyd.db.slots import SlotQueries
from notifyd.domain import (
    Attempt,
    AttemptRecord,
    ClaimedNotification,
    Recorded,
    Status,
)

# The claim: `notifyd.claim()` (in sql/) leases the most urgent due rows, with the planner
# settings that keep its plan right on stale statistics. UPDATE ... RETURNING does not keep
# the order the rows were picked in: they are put back in it here, by the server, as is
# the creation time made a number (seconds since the epoch), which the driver reads in C
# where a timestamp would go through Python for every row.
CLAIM: Final = """
    SELECT id, user_id, subject, message, channels, claims,
           date_part('epoch', created_at) AS created, priority, email, phone,
           telegram_chat_id, suppressed, round
    FROM notifyd.claim($1, $2, $3)
    ORDER BY priority DESC, run_after, id
"""

# A batch of attempts in one statement (one row per notification: an actor waits for its
# attempt to be written before it makes the next). Final statuses are set, and their
# attempts written, only where this instance still holds the lease; so are other attempts.
# The plan may not depend on the planner's guesses, which are poor here (how many rows this
# instance holds is never in the statistics): notifications are found by primary key
# (`= ANY`, never a join with an unnested array or a walk of every leased row), and the
# batch is filtered by two hashed sets (IN under OR is never turned into a join). It answers
# with the ids it did not write, almost always none: one empty array to decode, not a row
# per attempt. The attempts come as one array of `notifyd.new_attempt` rows (sql/0007),
# which the driver encodes with four checks per attempt where parallel arrays took one or
# two per value (sql/0007 says why). In them, provider answers are JSON text and instants
# seconds since the epoch: asyncpg's codecs for jsonb and timestamptz (notifyd's, see
# codecs.py) would call back into Python for each one.
# `lease_expires_at IS NOT NULL` stands for status 'processing' (the lease_consistent check
# makes them equal while locked_by is set), so the partial index of leased rows, which
# holds every row in flight, is not a candidate.
# The batch's rows are locked first, skipping those another transaction holds (`busy`:
# written later, not waited for with every actor behind them), then updated by the tuple
# ids the lock found (a TID scan: no second index walk, and no `= ANY` over a computed
# array, which is a linear search for every row).
# $1 owner, $2 the attempts' notification ids (in the attempts' order), $3 the attempts,
# $4 the ids that end with this attempt, $5 those of them that end `failed`, $6 the others.
RECORD_ATTEMPTS: Final = """
    WITH mine AS MATERIALIZED (
        SELECT id, ctid AS row_id, id = ANY($4::bigint[]) AS final
        FROM notifyd.notifications
        WHERE id = ANY($2::bigint[]) AND locked_by = $1 AND lease_expires_at IS NOT NULL
        FOR NO KEY UPDATE SKIP LOCKED
    ),
    finished AS (
        UPDATE notifyd.notifications AS n
        SET status = CASE WHEN n.id = ANY($5::bigint[]) THEN 'failed' ELSE 'sent' END,
            locked_by = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now()
        WHERE n.ctid = ANY(ARRAY(SELECT row_id FROM mine WHERE final))
          AND n.locked_by = $1 AND n.lease_expires_at IS NOT NULL
        RETURNING n.id, n.status
    ),
    held AS (
        SELECT id FROM mine WHERE NOT final AND id = ANY($6::bigint[])
    ),
    stopped AS (
        UPDATE notifyd.notifications AS n
        SET status = 'cancelled', locked_by = NULL, lease_expires_at = NULL,
            finished_at = now(), updated_at = now()
        WHERE n.ctid = ANY(ARRAY(SELECT row_id FROM mine WHERE NOT final))
          AND n.locked_by = $1 AND n.lease_expires_at IS NOT NULL
          AND n.cancel_requested_at IS NOT NULL
        RETURNING n.id
    ),
    written AS (
        INSERT INTO notifyd.notification_attempts
            (notification_id, channel, attempt, status, error, transient, provider_response,
             started_at, finished_at, round)
        SELECT b.notification_id, b.channel, b.attempt, b.status, b.error, b.transient,
               b.provider_response::jsonb, to_timestamp(b.started_at),
               to_timestamp(b.finished_at), b.round
        FROM unnest($3::notifyd.new_attempt[]) AS b
        WHERE b.notification_id IN (SELECT id FROM finished)
           OR b.notification_id IN (SELECT id FROM held)
        RETURNING notification_id
    ),
    unwritten AS (
        SELECT id FROM unnest($2::bigint[]) AS id
        WHERE id NOT IN (SELECT notification_id FROM written)
    ),
    still_held AS (
        SELECT id FROM notifyd.notifications
        WHERE id = ANY(ARRAY(SELECT id FROM unwritten))
          AND locked_by = $1 AND lease_expires_at IS NOT NULL
    )
    SELECT ARRAY(
               SELECT id FROM unwritten WHERE id NOT IN (SELECT id FROM still_held)
           ) AS not_written,
           ARRAY(
               SELECT id FROM stopped
               UNION ALL
               SELECT id FROM finished WHERE status = 'cancelled'
           ) AS cancelled,
           ARRAY(SELECT id FROM still_held) AS busy
"""
FINISH_WITHOUT_ATTEMPT: Final = """
    UPDATE notifyd.notifications
    SET status = $3, locked_by = NULL, lease_expires_at = NULL,
        finished_at = now(), updated_at = now()
    WHERE id = $1 AND locked_by = $2 AND status = 'processing'
    RETURNING id
"""
# End a held notification whose cancel was asked for. The database has the last word: a
# NOTIFY on notifyd_cancel needs no rights on any table, so the instance's word alone
# never cancels anything. Answers 'cancelled', 'not_asked' (held, no cancel: deliver on)
# or 'not_held' (the lease is no longer this instance's).
FINISH_CANCELLED: Final = """
    WITH target AS (
        SELECT id, cancel_requested_at IS NOT NULL AS asked
        FROM notifyd.notifications
        WHERE id = $1 AND locked_by = $2 AND status = 'processing'
    ),
    done AS (
        UPDATE notifyd.notifications AS n
        SET status = 'cancelled', locked_by = NULL, lease_expires_at = NULL,
            finished_at = now(), updated_at = now()
        FROM target
        WHERE n.id = target.id AND target.asked
        RETURNING n.id
    )
    SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM target) THEN 'not_held'
                WHEN EXISTS (SELECT 1 FROM done) THEN 'cancelled'
                ELSE 'not_asked' END
"""
# Which of the notifications this instance holds someone asked to cancel (a heartbeat's
# look, for a NOTIFY on notifyd_cancel that was missed).
CANCEL_REQUESTED: Final = """
    SELECT coalesce(array_agg(id), '{}') FROM notifyd.notifications
    WHERE id = ANY($2::bigint[]) AND locked_by = $1 AND cancel_requested_at IS NOT NULL
"""
# Rows claimed or renewed less than a heartbeat ago are skipped: renewing them would only
# rewrite rows (a new version each) that a fast drain finishes within seconds anyway. So
# are rows another transaction holds locked: renewed at the next heartbeat, not waited for.
# Answers the ids whose lease holds for a heartbeat's renewal: renewed now, or recently.
EXTEND_LEASES: Final = """
    WITH due AS MATERIALIZED (
        SELECT ctid AS row_id FROM notifyd.notifications
        WHERE id = ANY($2::bigint[]) AND locked_by = $1 AND status = 'processing'
          AND updated_at < now() - make_interval(secs => $4)
        FOR NO KEY UPDATE SKIP LOCKED
    ),
    renewed AS (
        UPDATE notifyd.notifications
        SET lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
        WHERE ctid = ANY(ARRAY(SELECT row_id FROM due)) AND locked_by = $1
        RETURNING id
    )
    SELECT ARRAY(
        SELECT id FROM renewed
        UNION ALL
        SELECT id FROM notifyd.notifications
        WHERE id = ANY($2::bigint[]) AND locked_by = $1 AND status = 'processing'
          AND updated_at >= now() - make_interval(secs => $4)
    )
"""
RELEASE: Final = """
    UPDATE notifyd.notifications AS n
    SET status = 'pending', locked_by = NULL, lease_expires_at = NULL,
        run_after = greatest(n.run_after, r.run_after), updated_at = now()
    FROM unnest($2::bigint[], $3::timestamptz[]) AS r (id, run_after)
    WHERE n.id = r.id AND n.locked_by = $1 AND n.status = 'processing'
"""
# Back to the queue until a sending slot `$3` seconds away, counted on the database's clock
# as the slot was (this host's may be behind it: counted here, the notification would be
# claimed again before its slot, and sent back again, over and over).
DEFER: Final = """
    UPDATE notifyd.notifications
    SET status = 'pending', locked_by = NULL, lease_expires_at = NULL,
        run_after = greatest(run_after, clock_timestamp() + make_interval(secs => $3)),
        updated_at = now()
    WHERE id = $2 AND locked_by = $1 AND status = 'processing'
"""
REQUEUE_EXPIRED: Final = """
    UPDATE notifyd.notifications
    SET status = 'pending', locked_by = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE id IN (
        SELECT id FROM notifyd.notifications
        WHERE status = 'processing' AND lease_expires_at < now()
        ORDER BY lease_expires_at
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    )
"""
# Leases held by instances that are gone: their presence lock is free (the session died
# with the process) and their heartbeat has stopped. The heartbeat (updated_at, refreshed
# with every lease extension) keeps a live instance that only lost its session connection
# from being taken over while it still works; rows are taken only if claimed before this
# statement began, so before the lock list was read (an instance locks before it claims).
REQUEUE_ORPHANED: Final = """
    UPDATE notifyd.notifications
    SET status = 'pending', locked_by = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE id IN (
        SELECT id FROM notifyd.notifications
        WHERE status = 'processing'
          AND locked_by <> $1
          AND updated_at < now() - make_interval(secs => $3)
          AND notifyd.instance_lock_key(locked_by) NOT IN (SELECT notifyd.live_instance_keys())
        ORDER BY id
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
"""
WAKE: Final = "SELECT pg_notify($1, '')"


class Queue(SlotQueries, RetentionQueries):
    """Lease notifications to an instance, record their attempts, and keep the table tidy."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def ping(self, query_timeout: float) -> None:
        """Raise `DatabaseUnavailableError` unless the database answers in time."""
        await self._pool.ping(query_timeout)

    async def claim(
        self, limit: int, owner: UUID, lease_seconds: float
    ) -> list[ClaimedNotification]:
        """Lease up to `limit` due notifications to `owner`, in the order to deliver them."""
        async with translate_errors():
            found = await self._pool.fetch(CLAIM, limit, owner, lease_seconds)
        return [rows.claimed(row) for row in found]

    async def attempts(self, notification_ids: Sequence[int]) -> dict[int, list[Attempt]]:
        """The attempt log of each notification, oldest first (to resume a delivery)."""
        return await fetch_attempts(self._pool, notification_ids)

    async def record_attempts(
        self, owner: UUID, entries: Sequence[tuple[AttemptRecord, Status | None]]
    ) -> Recorded:
        """Write attempts (with final statuses where given) while `owner` holds the leases.

        At most one entry per notification. Answers the notification ids not written (their
        leases are no longer `owner`'s, and nothing was written for them), and those that
        ended `cancelled` instead (a cancel was asked for while the attempt was made).
        """
        records = [record for record, _ in entries]
        finals: list[int] = []
        failed: list[int] = []
        others: list[int] = []
        for record, status in entries:
            if status is None:
                others.append(record.notification_id)
                continue
            if status not in (Status.SENT, Status.FAILED):
                raise ValueError(f"a final status is 'sent' or 'failed', not {status!r}")
            finals.append(record.notification_id)
            if status == Status.FAILED:
                failed.append(record.notification_id)
        async with translate_errors():
            row = await self._pool.fetchrow(
                RECORD_ATTEMPTS,
                owner,
                [r.notification_id for r in records],
                [
                    (
                        r.notification_id,
                        r.channel,
                        r.attempt,
                        r.status,
                        r.error,
                        r.transient,
                        None if r.provider_response is None else json_text(r.provider_response),
                        r.started_at,
                        r.finished_at,
                        r.round,
                    )
                    for r in records
                ],
                finals,
                failed,
                others,
            )
        found = rows.returned(row)
        return Recorded(set(found["not_written"]), set(found["cancelled"]), set(found["busy"]))

    async def finish_without_attempt(
        self, notification_id: int, owner: UUID, status: Status = Status.FAILED
    ) -> bool:
        """Set a final status when nothing is left to try (a resumed, used-up delivery)."""
        async with translate_errors():
            found = await self._pool.fetchval(
                FINISH_WITHOUT_ATTEMPT, notification_id, owner, status
            )
        return found is not None

    async def finish_cancelled(self, notification_id: int, owner: UUID) -> str:
        """End it `cancelled` if a cancel was asked for: 'cancelled', 'not_asked' or
        'not_held'."""
        async with translate_errors():
            outcome: str = await self._pool.fetchval(FINISH_CANCELLED, notification_id, owner)
        return outcome

    async def cancel_requested(self, owner: UUID, notification_ids: Sequence[int]) -> set[int]:
        """Which of these, held by `owner`, someone asked to cancel."""
        async with translate_errors():
            found: list[int] = await self._pool.fetchval(
                CANCEL_REQUESTED, owner, list(notification_ids)
            )
        return set(found)

    async def extend_leases(
        self,
        owner: UUID,
        notification_ids: Sequence[int],
        lease_seconds: float,
        renewed_within: float = 0.0,
    ) -> set[int]:
        """Renew `owner`'s leases, except those claimed or renewed in `renewed_within` s.

        Answers the ids whose lease now runs at least `lease_seconds - renewed_within` from
        the call: not those another transaction held locked, or no longer `owner`'s.
        """
        async with translate_errors():
            held = await self._pool.fetchval(
                EXTEND_LEASES, owner, list(notification_ids), lease_seconds, renewed_within
            )
        return set(held)

    async def release(self, owner: UUID, unfinished: Sequence[tuple[int, datetime]]) -> None:
        """Hand leased notifications back to the queue: (id, claimable from) pairs."""
        ids = [notification_id for notification_id, _ in unfinished]
        times = [run_after for _, run_after in unfinished]
        async with translate_errors():
            await self._pool.execute(RELEASE, owner, ids, times)

    async def defer(self, owner: UUID, notification_id: int, seconds: float) -> None:
        """Hand a leased notification back to the queue, claimable `seconds` from now."""
        async with translate_errors():
            await self._pool.execute(DEFER, owner, notification_id, seconds)

    async def requeue_expired(self, limit: int = 1000) -> int:
        """Make notifications whose lease ran out claimable again; wake the dispatchers."""
        return await self._requeue(REQUEUE_EXPIRED, limit)

    async def requeue_orphaned(self, owner: UUID, silent_for: float, limit: int = 1000) -> int:
        """Make claimable again what gone instances held; wake the dispatchers.

        Gone: no presence lock, and no heartbeat for `silent_for` seconds.
        """
        return await self._requeue(REQUEUE_ORPHANED, owner, limit, silent_for)

    async def _requeue(self, query: str, *args: Any) -> int:
        async with translate_errors(), self._pool.acquire() as connection:
            status = await connection.execute(query, *args)
            count = int(status.split()[-1])
            if count:
                await connection.execute(WAKE, WAKE_CHANNEL)
        return count
