"""The switch that says whether status events are recorded (notifyd.status_event_recording).

A row there means the triggers of sql/0005 write a row of notifyd.webhook_events for each
notification that ends; no row, they write nothing (sql/0006). One switch for the whole
database: an instance with webhook endpoints turns it on at start, an operator off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from notifyd.db.connection import Pool, translate_errors

# The longest `switched_on_by` the table takes (its check).
MAX_SWITCHED_ON_BY: Final = 200

STATE: Final = "SELECT since, switched_on_by FROM notifyd.status_event_recording"
# Idempotent: a second instance starting at the same time waits for the first's row and
# then inserts nothing, so exactly one of them is told it switched it on.
SWITCH_ON: Final = """
    INSERT INTO notifyd.status_event_recording (switched_on_by) VALUES ($1)
    ON CONFLICT (singleton) DO NOTHING
    RETURNING since, switched_on_by
"""
SWITCH_OFF: Final = """
    DELETE FROM notifyd.status_event_recording
    RETURNING since, switched_on_by
"""
PENDING: Final = "SELECT count(*) FROM notifyd.webhook_events WHERE status = 'pending'"


@dataclass(frozen=True, slots=True)
class Recording:
    """Status events are recorded: since when, and who switched it on."""

    since: datetime
    switched_on_by: str


class EventRecording:
    """Read and flip the switch."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def state(self) -> Recording | None:
        """Since when events are recorded; None when they are not."""
        async with translate_errors():
            found = await self._pool.fetchrow(STATE)
        return None if found is None else Recording(found["since"], found["switched_on_by"])

    async def switch_on(self, by: str) -> Recording | None:
        """Record events from now on; the new state if this call switched it on, else None."""
        async with translate_errors():
            found = await self._pool.fetchrow(SWITCH_ON, by[:MAX_SWITCHED_ON_BY] or "?")
        return None if found is None else Recording(found["since"], found["switched_on_by"])

    async def switch_off(self) -> Recording | None:
        """Record no more events; what the state was (None: it was off already)."""
        async with translate_errors():
            found = await self._pool.fetchrow(SWITCH_OFF)
        return None if found is None else Recording(found["since"], found["switched_on_by"])

    async def pending(self) -> int:
        """Events recorded and not sent yet (nor given up on)."""
        async with translate_errors():
            count: int = await self._pool.fetchval(PENDING)
        return count
