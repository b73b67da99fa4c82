"""The attempt recorder: writes finished attempts (and final statuses) in batches.

Actors hand each finished attempt to the recorder and go on with the next delivery; the
recorder's writers each take everything waiting (up to `max_batch`) and write it in one
statement, so under load one round trip carries hundreds of attempts while an idle daemon
still writes each attempt at once. What happens next to a notification (finish, retry,
fall back) is decided only after its attempt is in the database: an attempt nobody has
seen recorded yet may be lost in a crash only together with its lease, and is then made
again, never silently dropped.

Backpressure: while writes fail (the database is away) or too many attempts wait to be
written, `wait_for_room` holds the actors back, so an outage does not let them send the
whole claimed backlog with no record of it (which would all be sent again later).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from notifyd.delivery.store import DeliveryStore
from notifyd.domain import AttemptRecord, Status
from notifyd.errors import DatabaseUnavailableError
from notifyd.logs import get_logger

log = get_logger(__name__)

# Called once the write is decided: True if written (the lease was still held).
Recorded = Callable[[bool], None]


@dataclass(slots=True)
class _Entry:
    record: AttemptRecord
    final_status: Status | None
    on_recorded: Recorded
    # Monotonic time after which retrying the write is pointless: the lease has lapsed.
    give_up_at: float


class Recorder:
    """Batches attempt writes; `writers` tasks write concurrently, each a whole batch."""

    def __init__(
        self,
        store: DeliveryStore,
        owner: UUID,
        *,
        give_up_after: float,
        max_batch: int = 500,
        max_unwritten: int | None = None,
        retry_delay_max: float = 2.0,
    ) -> None:
        self._store = store
        self._owner = owner
        self._give_up_after = give_up_after
        self._max_batch = max_batch
        self._retry_delay_max = retry_delay_max
        self._waiting: deque[_Entry] = deque()
        self._has_work = asyncio.Event()
        self._writing = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._max_unwritten = max_unwritten if max_unwritten is not None else max_batch
        self._failing = False
        self._room = asyncio.Event()
        self._room.set()
        # Statements written, attempts carried, and writes that failed, for tests and metrics.
        self.batches = 0
        self.records = 0
        self.failed_writes = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def submit(
        self, record: AttemptRecord, final_status: Status | None, on_recorded: Recorded
    ) -> None:
        """Queue an attempt (and the final status, if any) to be written."""
        give_up_at = time.monotonic() + self._give_up_after
        self._waiting.append(_Entry(record, final_status, on_recorded, give_up_at))
        self._idle.clear()
        self._has_work.set()
        self._update_room()

    @property
    def accepting(self) -> bool:
        """Whether actors may start new attempts (see `wait_for_room`)."""
        return self._room.is_set()

    async def wait_for_room(self) -> None:
        """Wait until writes go through and few enough attempts wait to be written."""
        await self._room.wait()

    def _update_room(self) -> None:
        if self._failing or len(self._waiting) >= self._max_unwritten:
            self._room.clear()
        else:
            self._room.set()

    async def wait_idle(self) -> None:
        """Wait until everything submitted so far has been written or given up."""
        await self._idle.wait()

    async def run(self) -> None:
        """One writer: take what is waiting, write it, repeat."""
        delay = 0.05
        while True:
            if self._failing and not self._waiting:
                # Everything unwritten was given up: only a database that answers again
                # may let the actors go on.
                await self._probe()
                continue
            await self._has_work.wait()
            batch = self._take()
            if not batch:
                continue
            self._writing += 1
            try:
                failed = await self._write(batch)
            finally:
                self._writing -= 1
            self._failing = failed
            self._update_room()
            if failed:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_delay_max)
            else:
                delay = 0.05
            self._update_idle()

    async def _probe(self) -> None:
        delay = 0.05
        while self._failing and not self._waiting:
            try:
                await self._store.ping(query_timeout=self._retry_delay_max)
            except DatabaseUnavailableError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_delay_max)
                continue
            self._failing = False
            self._update_room()

    def _take(self) -> list[_Entry]:
        batch: list[_Entry] = []
        waiting = self._waiting
        while waiting and len(batch) < self._max_batch:
            batch.append(waiting.popleft())
        if not waiting:
            self._has_work.clear()
        self._update_room()
        return batch

    def _update_idle(self) -> None:
        if not self._waiting and self._writing == 0:
            self._idle.set()

    async def _write(self, batch: list[_Entry]) -> bool:
        """Write one batch; on an outage put back what is still worth retrying."""
        try:
            not_written = await self._store.record_attempts(
                self._owner, [(entry.record, entry.final_status) for entry in batch]
            )
        except DatabaseUnavailableError as exc:
            self.failed_writes += 1
            now = time.monotonic()
            retry = [entry for entry in batch if entry.give_up_at > now]
            for entry in batch:
                if entry.give_up_at <= now:
                    log.error(
                        "attempt_not_recorded",
                        notification_id=entry.record.notification_id,
                        channel=entry.record.channel,
                        attempt=entry.record.attempt,
                        error=str(exc),
                    )
                    entry.on_recorded(False)
            self._waiting.extendleft(reversed(retry))
            if retry:
                self._has_work.set()
            return True
        self.batches += 1
        self.records += len(batch)
        for entry in batch:
            owned = entry.record.notification_id not in not_written
            if not owned:
                log.warning(
                    "lease_lost",
                    notification_id=entry.record.notification_id,
                    channel=entry.record.channel,
                    attempt=entry.record.attempt,
                )
            entry.on_recorded(owned)
        return False
