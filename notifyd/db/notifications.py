"""Notifications: the one way in (enqueue, once per idempotency key if asked), and reads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Final

import asyncpg

from notifyd.db import rows
from notifyd.db.connection import Pool, translate_errors
from notifyd.domain import (
    Attempt,
    Enqueued,
    IdempotencyKey,
    NewNotification,
    Notification,
    NotificationFilter,
    Status,
)
from notifyd.errors import (
    ConstraintViolationError,
    IdempotencyKeyReusedError,
    NotFoundError,
    UnknownUserError,
)

# Every enqueue, of one notification or of many, is this statement (the API's group
# commit, the CLI, idempotent requests). The ids are drawn first so each returned row can
# be matched with its place in the input: RETURNING promises no order. Channel lists
# travel joined by commas, since a PostgreSQL array of arrays must be rectangular; channel
# names are known words without commas. Message and subject are stored as given, so they
# are not sent back.
INSERT_NOTIFICATIONS: Final = """
    WITH input AS (
        SELECT nextval('notifyd.notifications_id_seq') AS id, t.*
        FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                    $6::smallint[])
            WITH ORDINALITY AS t(user_id, subject, message, channels, send_at, priority, ord)
    ), inserted AS (
        INSERT INTO notifyd.notifications
            (id, user_id, subject, message, channels, send_at, priority)
        SELECT id, user_id, subject, message, string_to_array(channels, ','), send_at, priority
        FROM input ORDER BY ord
        RETURNING id, user_id, channels, status, send_at, priority, created_at, updated_at,
                  finished_at, round, cancel_requested_at
    )
    SELECT input.ord, inserted.*
    FROM inserted JOIN input USING (id)
    ORDER BY input.ord
"""
# The key is taken in the enqueueing transaction: a concurrent request with the same key
# waits here until the first one commits, then finds its answer. A key older than its
# retention is taken over as if new.
TAKE_IDEMPOTENCY_KEY: Final = """
    INSERT INTO notifyd.idempotency_keys (scope, key, fingerprint) VALUES ($1, $2, $3)
    ON CONFLICT (scope, key) DO UPDATE
        SET fingerprint = EXCLUDED.fingerprint, notification_id = NULL, status_code = NULL,
            response = NULL, created_at = now()
        WHERE idempotency_keys.created_at < now() - make_interval(secs => $4)
    RETURNING key
"""
SELECT_IDEMPOTENCY_KEY: Final = """
    SELECT fingerprint, status_code, response FROM notifyd.idempotency_keys
    WHERE scope = $1 AND key = $2
"""
SAVE_IDEMPOTENT_RESPONSE: Final = """
    UPDATE notifyd.idempotency_keys
    SET notification_id = $3, status_code = $4, response = $5
    WHERE scope = $1 AND key = $2
"""
SELECT_NOTIFICATION: Final = """
    SELECT id, user_id, subject, message, channels, status, send_at, priority, created_at,
           updated_at, finished_at, round, cancel_requested_at
    FROM notifyd.notifications WHERE id = $1
"""
# Newest first, by id (keyset pagination: no OFFSET, however deep the page). A NULL filter
# matches everything; with custom plans the planner drops those conditions.
LIST_NOTIFICATIONS: Final = """
    SELECT id, user_id, subject, message, channels, status, send_at, priority, created_at,
           updated_at, finished_at, round, cancel_requested_at
    FROM notifyd.notifications
    WHERE ($1::text IS NULL OR status = $1)
      AND ($2::bigint IS NULL OR user_id = $2)
      AND ($3::text IS NULL OR $3 = ANY (channels))
      AND ($4::timestamptz IS NULL OR created_at >= $4)
      AND ($5::timestamptz IS NULL OR created_at < $5)
      AND ($6::bigint IS NULL OR id < $6)
    ORDER BY id DESC
    LIMIT $7
"""
SELECT_ATTEMPTS: Final = """
    SELECT id, notification_id, channel, attempt, status, error, transient, provider_response,
           started_at, finished_at, round
    FROM notifyd.notification_attempts
    WHERE notification_id = ANY($1::bigint[])
    ORDER BY notification_id, id
"""


class Notifications:
    """Enqueue notifications and read them back with their attempts."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def enqueue(self, batch: Sequence[NewNotification]) -> list[Notification]:
        """Enqueue all of `batch` in one statement, or none of it; results in its order.

        Any refusal (an unknown user, a constraint) fails the whole batch with the error of
        the first row the database refused; callers that need each row's own error enqueue
        the rows one by one after that.
        """
        if not batch:
            return []
        async with _unknown_user(batch), translate_errors(), self._pool.acquire() as connection:
            return await _insert(connection, batch)

    async def enqueue_once(
        self, key: IdempotencyKey, new: NewNotification
    ) -> tuple[Enqueued, bool]:
        """Enqueue unless `key` was seen; return the first answer and whether it is a replay.

        Raises `IdempotencyKeyReusedError` when the key came with another request.
        """
        async with (
            _unknown_user([new]),
            translate_errors(),
            self._pool.acquire() as connection,
            connection.transaction(),
        ):
            taken = await connection.fetchval(
                TAKE_IDEMPOTENCY_KEY, key.scope, key.key, key.fingerprint, key.keep_seconds
            )
            if taken is None:
                stored = rows.returned(
                    await connection.fetchrow(SELECT_IDEMPOTENCY_KEY, key.scope, key.key)
                )
                if stored["fingerprint"] != key.fingerprint:
                    raise IdempotencyKeyReusedError(
                        "this Idempotency-Key was used with a different request"
                    )
                return _stored_answer(stored["response"]), True
            (notification,) = await _insert(connection, [new])
            answer = Enqueued(notification.id, notification.status, notification.created_at)
            await connection.execute(
                SAVE_IDEMPOTENT_RESPONSE,
                key.scope,
                key.key,
                notification.id,
                200,
                _answer_json(answer),
            )
        return answer, False

    async def get(self, notification_id: int) -> Notification:
        async with translate_errors():
            row = await self._pool.fetchrow(SELECT_NOTIFICATION, notification_id)
        if row is None:
            raise NotFoundError(f"notification {notification_id} does not exist")
        return rows.notification(row)

    async def page(self, where: NotificationFilter, limit: int) -> list[Notification]:
        """Up to `limit` notifications matching `where`, newest first."""
        async with translate_errors():
            found = await self._pool.fetch(
                LIST_NOTIFICATIONS,
                where.status,
                where.user_id,
                where.channel,
                where.created_after,
                where.created_before,
                where.before_id,
                limit,
            )
        return [rows.notification(row) for row in found]

    async def attempts(self, notification_ids: Sequence[int]) -> dict[int, list[Attempt]]:
        """The attempt log of each notification, oldest first."""
        return await fetch_attempts(self._pool, notification_ids)


async def fetch_attempts(pool: Pool, notification_ids: Sequence[int]) -> dict[int, list[Attempt]]:
    """The attempt log of each notification, oldest first."""
    async with translate_errors():
        found = await pool.fetch(SELECT_ATTEMPTS, list(notification_ids))
    result: dict[int, list[Attempt]] = {nid: [] for nid in notification_ids}
    for row in found:
        result[row["notification_id"]].append(rows.attempt(row))
    return result


async def _insert(
    connection: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], batch: Sequence[NewNotification]
) -> list[Notification]:
    found = await connection.fetch(
        INSERT_NOTIFICATIONS,
        [new.user_id for new in batch],
        [new.subject for new in batch],
        [new.message for new in batch],
        [",".join(new.channels) for new in batch],
        [new.send_at for new in batch],
        [new.priority for new in batch],
    )
    if len(found) != len(batch):
        raise RuntimeError(f"INSERT of {len(batch)} notifications returned {len(found)} rows")
    return [
        rows.notification(row, subject=new.subject, message=new.message)
        for new, row in zip(batch, found, strict=True)
    ]


def _answer_json(answer: Enqueued) -> dict[str, Any]:
    return {
        "id": answer.id,
        "status": answer.status,
        "created_at": answer.created_at.isoformat(timespec="microseconds"),
    }


def _stored_answer(stored: dict[str, Any]) -> Enqueued:
    return Enqueued(
        id=stored["id"],
        status=Status(stored["status"]),
        created_at=datetime.fromisoformat(stored["created_at"]),
    )


@asynccontextmanager
async def _unknown_user(batch: Sequence[NewNotification]) -> AsyncIterator[None]:
    """Turn the foreign key violation of a lone notification into `UnknownUserError`."""
    try:
        yield
    except ConstraintViolationError as exc:
        if exc.constraint.endswith("user_id_fkey") and len(batch) == 1:
            raise UnknownUserError(batch[0].user_id) from exc
        raise
