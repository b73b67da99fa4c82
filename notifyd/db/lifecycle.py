"""Cancel and retry: notifyd.cancel() and notifyd.retry() (sql/), with the answer to show."""

from __future__ import annotations

from typing import Final

from notifyd.db import rows
from notifyd.db.connection import Pool, translate_errors
from notifyd.db.notifications import SELECT_NOTIFICATION
from notifyd.domain import Notification
from notifyd.errors import NotFoundError, WrongStatusError

CANCEL: Final = "SELECT notifyd.cancel($1)"
RETRY: Final = "SELECT notifyd.retry($1)"


class Lifecycle:
    """Take back a notification not sent yet, or send again one that failed or was cancelled."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def cancel(self, notification_id: int) -> Notification:
        """Cancel it (pending), or ask its holder to (processing); return it as it is now.

        Raises `NotFoundError`, or `WrongStatusError` when it is final already.
        """
        return await self._change(CANCEL, notification_id, "cancelled")

    async def retry(self, notification_id: int) -> Notification:
        """Put a failed or cancelled notification back in the queue for a new round.

        Raises `NotFoundError`, or `WrongStatusError` for any other status.
        """
        return await self._change(RETRY, notification_id, "retried")

    async def _change(self, statement: str, notification_id: int, action: str) -> Notification:
        # One transaction: the row read is the one the function left, not a later one.
        async with (
            translate_errors(),
            self._pool.acquire() as connection,
            connection.transaction(),
        ):
            changed = await connection.fetchval(statement, notification_id)
            row = await connection.fetchrow(SELECT_NOTIFICATION, notification_id)
        if row is None:
            raise NotFoundError(f"notification {notification_id} does not exist")
        notification = rows.notification(row)
        if not changed:
            raise WrongStatusError(notification_id, notification.status, action)
        return notification
