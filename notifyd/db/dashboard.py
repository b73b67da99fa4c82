"""What the admin dashboard reads: the header's counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from notifyd.db import rows
from notifyd.db.connection import Pool, translate_errors
from notifyd.domain import CHANNELS, Channel

# The header of every admin page. Each part reads an index's worth of rows, not the table:
# pending rows through the partial notifications_pending_idx, the window's finished rows
# through notifications_finished_idx, the window's attempts through
# notification_attempts_finished_idx (all in sql/).
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


@dataclass(frozen=True, slots=True)
class ChannelRate:
    """A channel's attempts over the dashboard's window, and how many succeeded."""

    channel: Channel
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


class Dashboard:
    """The queries behind the dashboard's pages that are not the API's."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def counts(self, window: float) -> DashboardCounts:
        """What the admin pages' header shows: pending now, outcomes of the last `window` s."""
        async with translate_errors(), self._pool.acquire() as connection:
            totals = rows.returned(await connection.fetchrow(DASHBOARD_FINISHED, window))
            found = await connection.fetch(DASHBOARD_CHANNELS, window)
        by_channel = {row["channel"]: (row["attempts"], row["succeeded"]) for row in found}
        return DashboardCounts(
            window=window,
            pending=totals["pending"],
            sent=totals["sent"],
            failed=totals["failed"],
            channels=tuple(ChannelRate(name, *by_channel.get(name, (0, 0))) for name in CHANNELS),
        )
