"""Users and their contacts."""

from __future__ import annotations

from typing import Final

from notifyd.db import rows
from notifyd.db.connection import Pool, translate_errors
from notifyd.domain import Channel, User
from notifyd.errors import NotFoundError

INSERT_USER: Final = """
    INSERT INTO notifyd.users (email, phone, telegram_chat_id) VALUES ($1, $2, $3)
    RETURNING id, email, phone, telegram_chat_id, created_at, updated_at
"""
# With the user's suppressions as three arrays in channel order (`rows.suppressions`).
SELECT_USER: Final = """
    SELECT id, email, phone, telegram_chat_id, created_at, updated_at,
           ARRAY(SELECT s.channel FROM notifyd.suppressions AS s
                 WHERE s.user_id = users.id ORDER BY s.channel) AS suppressed_channels,
           ARRAY(SELECT s.reason FROM notifyd.suppressions AS s
                 WHERE s.user_id = users.id ORDER BY s.channel) AS suppressed_reasons,
           ARRAY(SELECT s.since FROM notifyd.suppressions AS s
                 WHERE s.user_id = users.id ORDER BY s.channel) AS suppressed_since
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
    RETURNING id
"""

# Oldest first, by id (keyset pagination, like LIST_NOTIFICATIONS).
LIST_USERS: Final = """
    SELECT id, email, phone, telegram_chat_id, created_at, updated_at,
           ARRAY(SELECT s.channel FROM notifyd.suppressions AS s
                 WHERE s.user_id = users.id ORDER BY s.channel) AS suppressed_channels,
           ARRAY(SELECT s.reason FROM notifyd.suppressions AS s
                 WHERE s.user_id = users.id ORDER BY s.channel) AS suppressed_reasons,
           ARRAY(SELECT s.since FROM notifyd.suppressions AS s
                 WHERE s.user_id = users.id ORDER BY s.channel) AS suppressed_since
    FROM notifyd.users
    WHERE ($1::bigint IS NULL OR id > $1)
    ORDER BY id
    LIMIT $2
"""


LIFT_SUPPRESSION: Final = """
    DELETE FROM notifyd.suppressions WHERE user_id = $1 AND channel = $2 RETURNING channel
"""


class Users:
    """Create, read, change and list users."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def create(
        self, email: str | None, phone: str | None, telegram_chat_id: str | None
    ) -> User:
        async with translate_errors():
            row = await self._pool.fetchrow(INSERT_USER, email, phone, telegram_chat_id)
        return rows.user(rows.returned(row))

    async def get(self, user_id: int) -> User:
        async with translate_errors():
            row = await self._pool.fetchrow(SELECT_USER, user_id)
        if row is None:
            raise NotFoundError(f"user {user_id} does not exist")
        return rows.user(row)

    async def update(self, user_id: int, changes: dict[str, str | None]) -> User:
        """Set the contacts named in `changes`; a None value clears that contact.

        A changed contact's suppression is lifted by a trigger at the end of the UPDATE,
        after its RETURNING: the user is read again, in the same transaction.
        """
        async with self._pool.connection() as connection, connection.transaction():
            updated = await connection.fetchval(
                UPDATE_USER,
                user_id,
                "email" in changes,
                changes.get("email"),
                "phone" in changes,
                changes.get("phone"),
                "telegram_chat_id" in changes,
                changes.get("telegram_chat_id"),
            )
            row = await connection.fetchrow(SELECT_USER, user_id)
        if updated is None or row is None:
            raise NotFoundError(f"user {user_id} does not exist")
        return rows.user(row)

    async def lift_suppression(self, user_id: int, channel: Channel) -> bool:
        """Lift the user's suppression on `channel`; False if there was none."""
        async with translate_errors():
            lifted = await self._pool.fetchval(LIFT_SUPPRESSION, user_id, channel.value)
        return lifted is not None

    async def page(self, after_id: int | None, limit: int) -> list[User]:
        """Up to `limit` users with ids above `after_id`, oldest first."""
        async with translate_errors():
            found = await self._pool.fetch(LIST_USERS, after_id, limit)
        return [rows.user(row) for row in found]
