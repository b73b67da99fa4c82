"""Sending slots and suppressed contacts: the pacing side of the queue (see `Queue`).

Slots live in PostgreSQL (`notifyd.reserve_slot`, a GCRA per channel and per recipient),
so every instance on one database shares a vendor's limit.
"""

from __future__ import annotations

from typing import Final

from notifyd.db import rows
from notifyd.db.connection import Pool, translate_errors
from notifyd.domain import Channel

RESERVE_SLOT: Final = "SELECT reserved, wait FROM notifyd.reserve_slot($1, $2, $3, $4, $5)"
PAUSE_SLOT: Final = "SELECT notifyd.pause_slot($1, $2)"
# The reason and the time are the latest vendor answer's. Only while the user still has
# that contact: one changed while the vendor was answering is a new chance (the trigger
# that lifts suppressions on a change ran before this row existed). FOR SHARE waits for a
# change under way and then reads the contact it left.
SUPPRESS: Final = """
    INSERT INTO notifyd.suppressions (user_id, channel, contact, reason)
    SELECT u.id, $2, $3, $4
    FROM notifyd.users AS u
    WHERE u.id = $1
      AND $3 = CASE $2 WHEN 'email' THEN u.email
                       WHEN 'sms' THEN u.phone
                       WHEN 'telegram' THEN u.telegram_chat_id END
    FOR SHARE OF u
    ON CONFLICT (user_id, channel) DO UPDATE
        SET contact = EXCLUDED.contact, reason = EXCLUDED.reason, since = now()
"""


class SlotQueries:
    """Take and push back sending slots; suppress a contact a vendor refuses for good."""

    _pool: Pool

    async def reserve_slot(
        self,
        channel_key: str | None,
        channel_interval: float,
        recipient_key: str | None,
        recipient_interval: float,
        horizon: float,
    ) -> tuple[bool, float]:
        """Take the next sending slot of a channel and a recipient if within `horizon` s."""
        async with translate_errors():
            row = await self._pool.fetchrow(
                RESERVE_SLOT,
                channel_key,
                channel_interval,
                recipient_key,
                recipient_interval,
                horizon,
            )
        found = rows.returned(row)
        return bool(found["reserved"]), float(found["wait"])

    async def pause_slot(self, key: str, seconds: float) -> None:
        """Give no slot of `key` for `seconds` (a vendor said "retry after")."""
        async with translate_errors():
            await self._pool.execute(PAUSE_SLOT, key, seconds)

    async def suppress(self, user_id: int, channel: Channel, contact: str, reason: str) -> bool:
        """Record that `contact` can never be reached on `channel`.

        False when the user no longer has that contact: nothing is recorded.
        """
        async with translate_errors():
            status = await self._pool.execute(SUPPRESS, user_id, channel, contact, reason)
        return status != "INSERT 0 0"
