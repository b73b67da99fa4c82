"""Every query notifyd runs, and the translation of rows into typed models.

Nothing outside this module sees asyncpg records or SQL; asyncpg errors become
`DatabaseUnavailableError`, `UnknownUserError`, `NotFoundError` or `ConstraintViolationError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from notifyd.constants import CHANNELS, FAILED, PRESENCE_LOCK_NAMESPACE, SENT, WAKE_CHANNEL
from notifyd.exceptions import (
    ConstraintViolationError,
    DatabaseUnavailableError,
    IdempotencyKeyReusedError,
    NotFoundError,
    UnknownUserError,
)
from notifyd.models import (
    Attempt,
    AttemptRecord,
    ClaimedNotification,
    IdempotencyKey,
    NewNotification,
    Notification,
    NotificationFilter,
    StoredResponse,
    User,
)
from notifyd.providers.base import Recipient

# Errors that mean "the database is not there right now", as opposed to a bad query.
CONNECTION_ERRORS: Final = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InvalidAuthorizationSpecificationError,
    # asyncpg's own state went wrong (an operation it thinks is still running, after a
    # cancellation raced a lost server): the connection cannot be used again.
    asyncpg.InternalClientError,
)
# The server refusing a new session: the database is not accepting connections (being
# dropped, restored or switched over) or is gone. Matched by exact class: their subclasses
# (a lock timeout, an object in use) happen while a query runs and are not outages.
REFUSED_SESSION_ERRORS: Final = (
    asyncpg.ObjectNotInPrerequisiteStateError,
    asyncpg.InvalidCatalogNameError,
)


SERVER_SETTINGS: Final = {
    "application_name": "notifyd",
    "timezone": "UTC",
    # A generic plan cached while a table was empty or never analyzed keeps a sequential
    # scan forever on that connection; custom plans follow the table as it grows.
    "plan_cache_mode": "force_custom_plan",
}


INSERT_USER: Final = """
    INSERT INTO notifyd.users (email, phone, telegram_chat_id) VALUES ($1, $2, $3)
    RETURNING id, email, phone, telegram_chat_id, created_at, updated_at
"""
SELECT_USER: Final = """
    SELECT id, email, phone, telegram_chat_id, created_at, updated_at
    FROM notifyd.users WHERE id = $1
"""
# Each contact is changed only when its flag is set, so PATCH can clear one with null.
UPDATE_USER: Final = """
    UPDATE notifyd.users SET
        email = CASE WHEN $2 THEN $3 ELSE email END,
        phone = CASE WHEN $4 THEN $5 ELSE phone END,
        telegram_chat_id = CASE WHEN $6 THEN $7 ELSE telegram_chat_id END,
        updated_at = now()
    WHERE id = $1
    RETURNING id, email, phone, telegram_chat_id, created_at, updated_at
"""

INSERT_NOTIFICATION: Final = """
    INSERT INTO notifyd.notifications (user_id, subject, message, channels, send_at, priority)
    VALUES ($1, $2, $3, $4, $5, $6)
    RETURNING id, user_id, subject, message, channels, status, send_at, priority, created_at,
              updated_at, finished_at
"""
# Many notifications in one statement (the API's group commit). The ids are drawn first so
# each returned row can be matched with its place in the input: RETURNING promises no
# order. Channel lists travel joined by commas, since a PostgreSQL array of arrays must be
# rectangular; channel names are known words without commas. Message and subject are
# stored as given, so they are not sent back.
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
                  finished_at
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
           updated_at, finished_at
    FROM notifyd.notifications WHERE id = $1
"""
# Newest first, by id (keyset pagination: no OFFSET, however deep the page). A NULL filter
# matches everything; with custom plans the planner drops those conditions.
LIST_NOTIFICATIONS: Final = """
    SELECT id, user_id, subject, message, channels, status, send_at, priority, created_at,
           updated_at, finished_at
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
           started_at, finished_at
    FROM notifyd.notification_attempts
    WHERE notification_id = ANY($1::bigint[])
    ORDER BY notification_id, id
"""

# The claim: `notifyd.claim()` (sql/0006_claim_function.sql) leases the most urgent due
# rows, with the planner settings that keep its plan right on stale statistics.
CLAIM: Final = "SELECT * FROM notifyd.claim($1, $2, $3)"

# A batch of attempts in one statement (one row per notification: an actor waits for its
# attempt to be written before it makes the next). Final statuses are set, and their
# attempts written, only where this instance still holds the lease; so are other attempts.
# The plan may not depend on the planner's guesses, which are poor here (how many rows this
# instance holds is never in the statistics): notifications are found by primary key
# (`= ANY`, never a join with an unnested array or a walk of every leased row), and the
# batch is filtered by two hashed sets (IN under OR is never turned into a join). It answers
# with the ids it did not write, almost always none: one empty array to decode, not a row
# per attempt. Provider answers come as JSON text: asyncpg's jsonb codec would call back
# into Python for each one.
# `lease_expires_at IS NOT NULL` stands for status 'processing' (the lease_consistent check
# makes them equal while locked_by is set), so the partial index of leased rows, which
# holds every row in flight, is not a candidate.
RECORD_ATTEMPTS: Final = """
    WITH finished AS (
        UPDATE notifyd.notifications AS n
        SET status = CASE WHEN n.id = ANY($12::bigint[]) THEN 'failed' ELSE 'sent' END,
            locked_by = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now()
        WHERE n.id = ANY($11::bigint[]) AND n.locked_by = $1 AND n.lease_expires_at IS NOT NULL
        RETURNING n.id
    ),
    held AS (
        SELECT id FROM notifyd.notifications
        WHERE id = ANY($13::bigint[]) AND locked_by = $1 AND lease_expires_at IS NOT NULL
    ),
    written AS (
        INSERT INTO notifyd.notification_attempts
            (notification_id, channel, attempt, status, error, transient, provider_response,
             started_at, finished_at)
        SELECT b.notification_id, b.channel, b.attempt, b.status, b.error, b.transient,
               b.provider_response::jsonb, b.started_at, b.finished_at
        FROM unnest($2::bigint[], $3::text[], $4::integer[], $5::text[], $6::text[],
                    $7::boolean[], $8::text[], $9::timestamptz[], $10::timestamptz[])
                AS b (notification_id, channel, attempt, status, error, transient,
                      provider_response, started_at, finished_at)
        WHERE b.notification_id IN (SELECT id FROM finished)
           OR b.notification_id IN (SELECT id FROM held)
        RETURNING notification_id
    )
    SELECT ARRAY(
        SELECT id FROM unnest($2::bigint[]) AS id
        WHERE id NOT IN (SELECT notification_id FROM written)
    )
"""
FINISH_WITHOUT_ATTEMPT: Final = """
    UPDATE notifyd.notifications
    SET status = $3, locked_by = NULL, lease_expires_at = NULL,
        finished_at = now(), updated_at = now()
    WHERE id = $1 AND locked_by = $2 AND status = 'processing'
    RETURNING id
"""
# Rows claimed or renewed less than a heartbeat ago are skipped: renewing them would only
# rewrite rows (a new version each) that a fast drain finishes within seconds anyway.
EXTEND_LEASES: Final = """
    UPDATE notifyd.notifications
    SET lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
    WHERE id = ANY($2::bigint[]) AND locked_by = $1 AND status = 'processing'
      AND updated_at < now() - make_interval(secs => $4)
"""
RELEASE: Final = """
    UPDATE notifyd.notifications AS n
    SET status = 'pending', locked_by = NULL, lease_expires_at = NULL,
        run_after = greatest(n.run_after, r.run_after), updated_at = now()
    FROM unnest($2::bigint[], $3::timestamptz[]) AS r (id, run_after)
    WHERE n.id = r.id AND n.locked_by = $1 AND n.status = 'processing'
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
# Retention: oldest first, in batches; another instance pruning at once skips these rows.
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
TAKE_PRESENCE: Final = "SELECT pg_try_advisory_lock($1, notifyd.instance_lock_key($2))"
WAKE: Final = "SELECT pg_notify($1, '')"
PING: Final = "SELECT 1"
COUNT_PENDING: Final = "SELECT count(*) FROM notifyd.notifications WHERE status = 'pending'"
IS_LISTENING: Final = "SELECT $1 = ANY(ARRAY(SELECT pg_listening_channels()))"

# Dashboard
#
# The header of every admin page. Each part reads an index's worth of rows, not the table:
# pending rows through the partial notifications_pending_idx, the window's finished rows
# through notifications_finished_idx, the window's attempts through
# notification_attempts_finished_idx (sql/0004_dashboard.sql).
DASHBOARD_FINISHED: Final = """
    SELECT (SELECT count(*) FROM notifyd.notifications WHERE status = 'pending') AS pending,
           count(*) FILTER (WHERE status = 'sent') AS sent,
           count(*) FILTER (WHERE status = 'failed') AS failed
    FROM notifyd.notifications
    WHERE finished_at >= now() - make_interval(secs => $1)
"""
DASHBOARD_CHANNELS: Final = """
    SELECT channel, count(*) AS attempts, count(*) FILTER (WHERE status = 'success') AS succeeded
    FROM notifyd.notification_attempts
    WHERE finished_at >= now() - make_interval(secs => $1)
    GROUP BY channel
"""
# Oldest first, by id (keyset pagination, like LIST_NOTIFICATIONS).
LIST_USERS: Final = """
    SELECT id, email, phone, telegram_chat_id, created_at, updated_at
    FROM notifyd.users
    WHERE ($1::bigint IS NULL OR id > $1)
    ORDER BY id
    LIMIT $2
"""


@dataclass(frozen=True, slots=True)
class ChannelRate:
    """A channel's attempts over the dashboard's window, and how many succeeded."""

    channel: str
    attempts: int
    succeeded: int


@dataclass(frozen=True, slots=True)
class DashboardCounts:
    """Pending now; sent, failed and attempts per channel within the last `window` seconds."""

    window: float
    pending: int
    sent: int
    failed: int
    # Every known channel, in the default order, with or without attempts.
    channels: tuple[ChannelRate, ...]


def _returned(row: asyncpg.Record | None) -> asyncpg.Record:
    """The row an INSERT ... RETURNING always gives back."""
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned no row")
    return row


def _user(row: asyncpg.Record) -> User:
    return User(
        id=row["id"],
        email=row["email"],
        phone=row["phone"],
        telegram_chat_id=row["telegram_chat_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _notification(
    row: asyncpg.Record, *, subject: str | None = None, message: str | None = None
) -> Notification:
    """The notification in `row`; `subject` and `message` when the row leaves them out."""
    return Notification(
        id=row["id"],
        user_id=row["user_id"],
        subject=row["subject"] if subject is None else subject,
        message=row["message"] if message is None else message,
        channels=tuple(row["channels"]),
        status=row["status"],
        send_at=row["send_at"],
        priority=row["priority"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
    )


def _insert_args(new: NewNotification) -> tuple[Any, ...]:
    return (
        new.user_id,
        new.subject,
        new.message,
        list(new.channels),
        new.send_at,
        new.priority,
    )


def _attempt(row: asyncpg.Record) -> Attempt:
    return Attempt(
        id=row["id"],
        notification_id=row["notification_id"],
        channel=row["channel"],
        attempt=row["attempt"],
        status=row["status"],
        error=row["error"],
        transient=row["transient"],
        provider_response=row["provider_response"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _claimed(row: asyncpg.Record) -> ClaimedNotification:
    return ClaimedNotification(
        id=row["id"],
        recipient=Recipient(
            user_id=row["user_id"],
            email=row["email"],
            phone=row["phone"],
            telegram_chat_id=row["telegram_chat_id"],
        ),
        subject=row["subject"],
        message=row["message"],
        channels=tuple(row["channels"]),
        created_at=row["created_at"],
        claims=row["claims"],
    )


@asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    """Turn asyncpg's errors into notifyd's."""
    try:
        yield
    except asyncpg.ForeignKeyViolationError as exc:
        raise ConstraintViolationError(exc.constraint_name or "", str(exc)) from exc
    except asyncpg.IntegrityConstraintViolationError as exc:
        constraint = getattr(exc, "constraint_name", None) or ""
        raise ConstraintViolationError(constraint, str(exc)) from exc
    except (*CONNECTION_ERRORS, *REFUSED_SESSION_ERRORS) as exc:
        if not isinstance(exc, CONNECTION_ERRORS) and type(exc) not in REFUSED_SESSION_ERRORS:
            raise
        reason = type(exc).__name__
        if isinstance(exc, asyncpg.PostgresError):
            reason = f"{reason}: {exc}"  # the server's words, which never quote a password
        raise DatabaseUnavailableError(f"database unavailable: {reason}") from exc


@asynccontextmanager
async def _unknown_user(user_id: int) -> AsyncIterator[None]:
    """Turn the foreign key violation of a notification into `UnknownUserError`."""
    try:
        yield
    except ConstraintViolationError as exc:
        if exc.constraint.endswith("user_id_fkey"):
            raise UnknownUserError(user_id) from exc
        raise


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Return a connection to the pool as it is, without asyncpg's reset query.

    The default reset costs a round trip per query. notifyd's queries leave a session as
    they found it: no SET, LISTEN or cursors on pooled connections, and the migration lock
    is released in a `finally`. asyncpg still rolls back a transaction left open.
    """


async def _init_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "jsonb",
        encoder=_json_text,
        decoder=orjson.loads,
        schema="pg_catalog",
    )


class Store:
    """The data-access layer: one asyncpg pool, one method per question or change."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
    ) -> Store:
        async with translate_errors():
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=connect_timeout,
                command_timeout=command_timeout,
                server_settings=SERVER_SETTINGS,
                init=_init_connection,
                reset=_keep_session,
            )
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        """A pooled connection that goes back to the pool only in a known state.

        Connections are returned without asyncpg's reset query (see `_keep_session`), and
        that query was also what noticed a connection left mid-operation by a timeout, a
        cancellation or a lost server. So a connection whose last operation ended in
        anything but an answer from the server (which leaves the session usable) is
        dropped here, and the next caller gets a fresh one.
        """
        async with self._pool.acquire() as connection:
            try:
                yield connection
            except asyncpg.PostgresError:
                raise
            except BaseException:
                connection.terminate()
                raise

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self._acquire() as connection:
            return await connection.fetch(query, *args)

    async def _fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self._acquire() as connection:
            return await connection.fetchrow(query, *args)

    async def _fetchval(self, query: str, *args: Any, query_timeout: float | None = None) -> Any:
        async with self._acquire() as connection:
            return await connection.fetchval(query, *args, timeout=query_timeout)

    async def _execute(self, query: str, *args: Any) -> str:
        async with self._acquire() as connection:
            return await connection.execute(query, *args)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        """A pooled connection, for the migration runner."""
        async with translate_errors(), self._acquire() as connection:
            yield connection

    async def ping(self, query_timeout: float) -> None:
        """Raise `DatabaseUnavailableError` unless the database answers in time."""
        async with translate_errors():
            await self._fetchval(PING, query_timeout=query_timeout)

    async def count_pending(self, query_timeout: float) -> int:
        """Notifications waiting in the table, for every instance."""
        async with translate_errors():
            count: int = await self._fetchval(COUNT_PENDING, query_timeout=query_timeout)
        return count

    # Users

    async def create_user(
        self, email: str | None, phone: str | None, telegram_chat_id: str | None
    ) -> User:
        async with translate_errors():
            row = await self._fetchrow(INSERT_USER, email, phone, telegram_chat_id)
        return _user(_returned(row))

    async def get_user(self, user_id: int) -> User:
        async with translate_errors():
            row = await self._fetchrow(SELECT_USER, user_id)
        if row is None:
            raise NotFoundError(f"user {user_id} does not exist")
        return _user(row)

    async def update_user(self, user_id: int, changes: dict[str, str | None]) -> User:
        """Set the contacts named in `changes`; a None value clears that contact."""
        async with translate_errors():
            row = await self._fetchrow(
                UPDATE_USER,
                user_id,
                "email" in changes,
                changes.get("email"),
                "phone" in changes,
                changes.get("phone"),
                "telegram_chat_id" in changes,
                changes.get("telegram_chat_id"),
            )
        if row is None:
            raise NotFoundError(f"user {user_id} does not exist")
        return _user(row)

    # Notifications

    async def enqueue(self, new: NewNotification) -> Notification:
        async with _unknown_user(new.user_id), translate_errors():
            row = await self._fetchrow(INSERT_NOTIFICATION, *_insert_args(new))
        return _notification(_returned(row))

    async def enqueue_many(self, batch: Sequence[NewNotification]) -> list[Notification]:
        """Enqueue all of `batch` in one statement, or none of it; results in its order.

        Any refusal (an unknown user, a constraint) fails the whole batch with the error of
        the first row the database refused; callers that need each row's own error enqueue
        the rows one by one after that.
        """
        if not batch:
            return []
        async with translate_errors():
            rows = await self._fetch(
                INSERT_NOTIFICATIONS,
                [new.user_id for new in batch],
                [new.subject for new in batch],
                [new.message for new in batch],
                [",".join(new.channels) for new in batch],
                [new.send_at for new in batch],
                [new.priority for new in batch],
            )
        if len(rows) != len(batch):
            raise RuntimeError(f"INSERT of {len(batch)} notifications returned {len(rows)} rows")
        return [
            _notification(row, subject=new.subject, message=new.message)
            for new, row in zip(batch, rows, strict=True)
        ]

    async def enqueue_once(
        self,
        key: IdempotencyKey,
        new: NewNotification,
        respond: Callable[[Notification], StoredResponse],
    ) -> tuple[StoredResponse, bool]:
        """Enqueue unless `key` was seen; return the first answer and whether it is a replay.

        Raises `IdempotencyKeyReusedError` when the key came with another request.
        """
        async with (
            _unknown_user(new.user_id),
            translate_errors(),
            self._acquire() as connection,
            connection.transaction(),
        ):
            taken = await connection.fetchval(
                TAKE_IDEMPOTENCY_KEY, key.scope, key.key, key.fingerprint, key.keep_seconds
            )
            if taken is None:
                stored = _returned(
                    await connection.fetchrow(SELECT_IDEMPOTENCY_KEY, key.scope, key.key)
                )
                if stored["fingerprint"] != key.fingerprint:
                    raise IdempotencyKeyReusedError(
                        "this Idempotency-Key was used with a different request"
                    )
                return StoredResponse(stored["status_code"], stored["response"]), True
            row = _returned(await connection.fetchrow(INSERT_NOTIFICATION, *_insert_args(new)))
            answer = respond(_notification(row))
            await connection.execute(
                SAVE_IDEMPOTENT_RESPONSE,
                key.scope,
                key.key,
                row["id"],
                answer.status_code,
                answer.body,
            )
        return answer, False

    async def get_notification(self, notification_id: int) -> Notification:
        async with translate_errors():
            row = await self._fetchrow(SELECT_NOTIFICATION, notification_id)
        if row is None:
            raise NotFoundError(f"notification {notification_id} does not exist")
        return _notification(row)

    async def list_notifications(self, where: NotificationFilter, limit: int) -> list[Notification]:
        """Up to `limit` notifications matching `where`, newest first."""
        async with translate_errors():
            rows = await self._fetch(
                LIST_NOTIFICATIONS,
                where.status,
                where.user_id,
                where.channel,
                where.created_after,
                where.created_before,
                where.before_id,
                limit,
            )
        return [_notification(row) for row in rows]

    async def attempts(self, notification_ids: Sequence[int]) -> dict[int, list[Attempt]]:
        """The attempt log of each notification, oldest first."""
        async with translate_errors():
            rows = await self._fetch(SELECT_ATTEMPTS, list(notification_ids))
        result: dict[int, list[Attempt]] = {nid: [] for nid in notification_ids}
        for row in rows:
            result[row["notification_id"]].append(_attempt(row))
        return result

    # The queue

    async def claim(
        self, limit: int, owner: UUID, lease_seconds: float
    ) -> list[ClaimedNotification]:
        """Lease up to `limit` due notifications to `owner`, in the order to deliver them."""
        async with translate_errors():
            rows = await self._fetch(CLAIM, limit, owner, lease_seconds)
        # UPDATE ... RETURNING does not keep the order the rows were picked in.
        rows.sort(key=lambda row: (-row["priority"], row["run_after"], row["id"]))
        return [_claimed(row) for row in rows]

    async def record_attempts(
        self, owner: UUID, entries: Sequence[tuple[AttemptRecord, str | None]]
    ) -> set[int]:
        """Write attempts (with final statuses where given) while `owner` holds the leases.

        At most one entry per notification. Returns the notification ids not written: their
        leases are no longer `owner`'s, and nothing was written for them.
        """
        records = [record for record, _ in entries]
        finals: list[int] = []
        failed: list[int] = []
        others: list[int] = []
        for record, status in entries:
            if status is None:
                others.append(record.notification_id)
                continue
            if status not in (SENT, FAILED):
                raise ValueError(f"a final status is {SENT!r} or {FAILED!r}, not {status!r}")
            finals.append(record.notification_id)
            if status == FAILED:
                failed.append(record.notification_id)
        async with translate_errors():
            not_written: list[int] = await self._fetchval(
                RECORD_ATTEMPTS,
                owner,
                [r.notification_id for r in records],
                [r.channel for r in records],
                [r.attempt for r in records],
                [r.status for r in records],
                [r.error for r in records],
                [r.transient for r in records],
                [
                    None if r.provider_response is None else _json_text(r.provider_response)
                    for r in records
                ],
                [r.started_at for r in records],
                [r.finished_at for r in records],
                finals,
                failed,
                others,
            )
        return set(not_written)

    async def finish_without_attempt(
        self, notification_id: int, owner: UUID, status: str = FAILED
    ) -> bool:
        """Set a final status when nothing is left to try (a resumed, used-up delivery)."""
        async with translate_errors():
            found = await self._fetchval(FINISH_WITHOUT_ATTEMPT, notification_id, owner, status)
        return found is not None

    async def extend_leases(
        self,
        owner: UUID,
        notification_ids: Sequence[int],
        lease_seconds: float,
        renewed_within: float = 0.0,
    ) -> None:
        """Renew `owner`'s leases, except those claimed or renewed in `renewed_within` s."""
        async with translate_errors():
            await self._execute(
                EXTEND_LEASES, owner, list(notification_ids), lease_seconds, renewed_within
            )

    async def release(self, owner: UUID, unfinished: Sequence[tuple[int, datetime]]) -> None:
        """Hand leased notifications back to the queue: (id, claimable from) pairs."""
        ids = [notification_id for notification_id, _ in unfinished]
        times = [run_after for _, run_after in unfinished]
        async with translate_errors():
            await self._execute(RELEASE, owner, ids, times)

    async def requeue_expired(self, limit: int = 1000) -> int:
        """Make notifications whose lease ran out claimable again; wake the dispatchers."""
        return await self._requeue(REQUEUE_EXPIRED, limit)

    async def requeue_orphaned(self, owner: UUID, silent_for: float, limit: int = 1000) -> int:
        """Make claimable again what gone instances held; wake the dispatchers.

        Gone: no presence lock, and no heartbeat for `silent_for` seconds.
        """
        return await self._requeue(REQUEUE_ORPHANED, owner, limit, silent_for)

    # Retention

    async def prune_notifications(self, older_than: float, limit: int) -> int:
        """Delete up to `limit` notifications finished `older_than` seconds ago."""
        return await self._delete(PRUNE_NOTIFICATIONS, older_than, limit)

    async def prune_idempotency_keys(self, older_than: float, limit: int) -> int:
        """Delete up to `limit` idempotency keys taken `older_than` seconds ago."""
        return await self._delete(PRUNE_IDEMPOTENCY_KEYS, older_than, limit)

    async def _delete(self, query: str, *args: Any) -> int:
        async with translate_errors():
            status = await self._execute(query, *args)
        return int(status.split()[-1])

    async def _requeue(self, query: str, *args: Any) -> int:
        async with translate_errors():
            status = await self._execute(query, *args)
            count = int(status.split()[-1])
            if count:
                await self._execute(WAKE, WAKE_CHANNEL)
        return count

    # Dashboard

    async def dashboard_counts(self, window: float) -> DashboardCounts:
        """What the admin pages' header shows: pending now, outcomes of the last `window` s."""
        async with translate_errors(), self._acquire() as connection:
            totals = _returned(await connection.fetchrow(DASHBOARD_FINISHED, window))
            rows = await connection.fetch(DASHBOARD_CHANNELS, window)
        found = {row["channel"]: (row["attempts"], row["succeeded"]) for row in rows}
        return DashboardCounts(
            window=window,
            pending=totals["pending"],
            sent=totals["sent"],
            failed=totals["failed"],
            channels=tuple(ChannelRate(name, *found.get(name, (0, 0))) for name in CHANNELS),
        )

    async def list_users(self, after_id: int | None, limit: int) -> list[User]:
        """Up to `limit` users with ids above `after_id`, oldest first."""
        async with translate_errors():
            rows = await self._fetch(LIST_USERS, after_id, limit)
        return [_user(row) for row in rows]


class ListenConnection:
    """A dedicated connection: LISTENs for wake-ups and holds this instance's presence lock.

    The presence lock is what tells other instances this one is alive; PostgreSQL drops it
    when the session ends, whether the process exited, crashed or lost its connection.
    """

    def __init__(self, connection: asyncpg.Connection, owner: UUID) -> None:
        self._connection = connection
        self._owner = owner
        self.present = False
        self.terminated = asyncio.Event()
        connection.add_termination_listener(lambda _conn: self.terminated.set())

    @classmethod
    async def open(
        cls, url: str, owner: UUID, on_notify: Callable[[], None], connect_timeout: float
    ) -> ListenConnection:
        async with translate_errors():
            connection = await asyncpg.connect(
                url,
                timeout=connect_timeout,
                server_settings={"application_name": "notifyd-listener"},
            )
            listen = cls(connection, owner)
            try:
                await connection.add_listener(WAKE_CHANNEL, lambda *_: on_notify())
                await listen.take_presence(connect_timeout)
            except BaseException:
                connection.terminate()
                raise
        return listen

    async def take_presence(self, query_timeout: float) -> bool:
        """Take the presence lock unless this session holds it already; return whether held.

        It can be held by an older session of this instance that the server has not yet
        noticed is gone; then it is tried again at the next check.
        """
        if not self.present:
            async with translate_errors():
                self.present = await self._connection.fetchval(
                    TAKE_PRESENCE, PRESENCE_LOCK_NAMESPACE, self._owner, timeout=query_timeout
                )
        return self.present

    async def is_listening(self, query_timeout: float) -> bool:
        """Ask the server whether this session still listens (catches a silent death)."""
        if self._connection.is_closed():
            return False
        async with translate_errors():
            listening: bool = await self._connection.fetchval(
                IS_LISTENING, WAKE_CHANNEL, timeout=query_timeout
            )
        return listening

    def backend_pid(self) -> int:
        return self._connection.get_server_pid()

    async def close(self) -> None:
        if self._connection.is_closed():
            return
        try:
            await asyncio.wait_for(self._connection.close(), timeout=2)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError):
            self._connection.terminate()


async def wait_for_database(
    connect: Callable[[], Awaitable[Store]], deadline: float, on_retry: Callable[[str], None]
) -> Store:
    """Connect, retrying with backoff until `deadline` (loop time) passes."""
    loop = asyncio.get_running_loop()
    delay = 0.2
    while True:
        try:
            return await connect()
        except DatabaseUnavailableError as exc:
            if loop.time() + delay > deadline:
                raise
            on_retry(str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
