"""Every query notifyd runs, grouped by what it is about, over one connection pool.

    Database
    ├── users          Users          create, read, change and list users
    ├── notifications  Notifications  enqueue (the one way in), read with attempts
    ├── lifecycle      Lifecycle      cancel and retry
    ├── queue          Queue          claim, record attempts, leases, retention
    ├── webhooks       WebhookOutbox  status events: take, settle, prune
    ├── recording      EventRecording whether status events are recorded (the switch)
    └── dashboard      Dashboard      the admin pages' counts

`listen.ListenConnection` is the session outside the pool (LISTEN and the presence lock),
`migrations` applies `sql/`, and `embedded` runs a PostgreSQL when none is configured.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from notifyd.config import PoolerSetting
from notifyd.db.connection import Pool, translate_errors, wait_for_database
from notifyd.db.dashboard import Dashboard, DashboardCounts
from notifyd.db.lifecycle import Lifecycle
from notifyd.db.listen import Place, place_of
from notifyd.db.notifications import Notifications
from notifyd.db.pooler import Route
from notifyd.db.queue import Queue
from notifyd.db.recording import EventRecording
from notifyd.db.users import Users
from notifyd.db.webhooks import WebhookOutbox
from notifyd.domain import CHANNELS, Channel

__all__ = [
    "ChannelState",
    "DashboardCounts",
    "Database",
    "Pool",
    "PoolerSetting",
    "Route",
    "wait_for_database",
]

COUNT_PENDING: Final = "SELECT count(*) FROM notifyd.notifications WHERE status = 'pending'"
# Per channel: suppressed contacts, and how far away its next sending slot is (a pause a
# vendor asked for, or a paced backlog), for every instance. A pacing row another
# application left at an odd time shows as it is, never below 0.
CHANNEL_STATE: Final = """
    SELECT c.channel,
           (SELECT count(*) FROM notifyd.suppressions AS s WHERE s.channel = c.channel)
               AS suppressed,
           coalesce((SELECT greatest(0, extract(epoch FROM p.tat - clock_timestamp()))
                     FROM notifyd.pacing AS p WHERE p.key = c.channel), 0)::float8
               AS next_slot
    FROM unnest($1::text[]) AS c (channel)
"""


@dataclass(frozen=True, slots=True)
class ChannelState:
    """What the database says of one channel, for every instance."""

    suppressed: int
    next_slot: float  # seconds from now


class Database:
    """notifyd's database: one pool, and the query groups that use it."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.users = Users(pool)
        self.notifications = Notifications(pool)
        self.lifecycle = Lifecycle(pool)
        self.queue = Queue(pool)
        self.dashboard = Dashboard(pool)
        self.webhooks = WebhookOutbox(pool)
        self.recording = EventRecording(pool)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
        pooler: PoolerSetting = "auto",
    ) -> Database:
        pool = await Pool.connect(
            url,
            min_size=min_size,
            max_size=max_size,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
            pooler=pooler,
        )
        return cls(pool)

    @property
    def route(self) -> Route:
        """How `database.url` reaches PostgreSQL (directly, or through a pooler)."""
        return self.pool.route

    async def close(self) -> None:
        await self.pool.close()

    async def ping(self, query_timeout: float) -> None:
        """Raise `DatabaseUnavailableError` unless the database answers in time."""
        await self.pool.ping(query_timeout)

    async def place(self) -> Place:
        """Which database this is, for the LISTEN session to be in the same one."""
        async with self.pool.connection() as connection:
            return await place_of(connection)

    async def count_pending(self, query_timeout: float) -> int:
        """Notifications waiting in the table, for every instance."""
        async with translate_errors(), asyncio.timeout(query_timeout):
            count: int = await self.pool.fetchval(COUNT_PENDING)
        return count

    async def channel_state(self, query_timeout: float) -> dict[Channel, ChannelState]:
        """Suppressed contacts and the next sending slot of each channel."""
        async with translate_errors(), asyncio.timeout(query_timeout):
            found = await self.pool.fetch(CHANNEL_STATE, [str(c) for c in CHANNELS])
        return {
            Channel(row["channel"]): ChannelState(row["suppressed"], row["next_slot"])
            for row in found
        }
