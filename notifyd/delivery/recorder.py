"""The attempt recorder: writes finished attempts (and final statuses) in batches.

An actor hands its attempt to `write` and waits for the answer before it decides what
comes next, so what happens to a notification (finish, retry, fall back) is decided only
once its attempt is in the database, and an actor never has more than one attempt that
nobody has seen recorded. Meanwhile the recorder's writers each take everything waiting
(up to `max_batch`) and write it in one statement: under load one round trip carries the
attempts of every actor, while an idle daemon still writes each attempt at once.

Backpressure: while writes fail (the database is away), or a write has gone unanswered for
`stall_after` seconds (the database hangs: a partition, a dead NAT mapping), or too many
attempts wait to be written, `wait_for_room` holds actors back from new attempts. A write
that cannot be made before the lease would have lapsed is given up: `write` answers False,
as it does when the lease is no longer this instance's.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from dataclasses import dataclass
from uuid import UUID

from notifyd.delivery.store import DeliveryStore
from notifyd.domain import UNSTORABLE_TEXT, AttemptRecord, Recorded, Status
from notifyd.errors import DatabaseUnavailableError
from notifyd.logs import get_logger

log = get_logger(__name__)

# How long an attempt whose row another transaction holds locked waits before it is
# written again (its own write only: the rest of its batch went through).
BUSY_RETRY_DELAY = 0.1


class Written(enum.Enum):
    """What became of an attempt handed to `Recorder.write`. Only `NO` is false."""

    # Not written: the lease was lost, or the write given up.
    NO = enum.auto()
    YES = enum.auto()
    # Written, and the notification ended `cancelled` (a cancel came while it was made).
    CANCELLED = enum.auto()

    def __bool__(self) -> bool:
        return self is not Written.NO


@dataclass(slots=True)
class _Entry:
    record: AttemptRecord
    final_status: Status | None
    written: asyncio.Future[Written]
    # Monotonic time after which writing it is pointless: the lease has lapsed.
    give_up_at: float
    # Whether its row has been found locked by another transaction (logged once).
    deferred: bool = False


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
        stall_after: float = 1.0,
    ) -> None:
        self._store = store
        self._owner = owner
        self._give_up_after = give_up_after
        self._max_batch = max_batch
        self._retry_delay_max = retry_delay_max
        self._stall_after = stall_after
        self._waiting: deque[_Entry] = deque()
        # Attempts whose row was locked by another transaction, to be written again soon.
        self._busy: list[_Entry] = []
        self._busy_retry: asyncio.TimerHandle | None = None
        # Batches whose statement is under way, with the time it was sent.
        self._in_progress: dict[int, tuple[float, list[_Entry]]] = {}
        self._has_work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._max_unwritten = max_unwritten if max_unwritten is not None else max_batch
        self._failing = False
        self._stalled = False
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        """Attempts made and not yet written."""
        in_progress = sum(len(batch) for _, batch in self._in_progress.values())
        return len(self._waiting) + len(self._busy) + in_progress

    async def write(self, record: AttemptRecord, final_status: Status | None) -> Written:
        """Write an attempt (and the final status, if any); answer once it is settled.

        `Written.NO` (false) when it was not written: the lease is no longer this
        instance's, or the database could not take it before the lease would have lapsed.
        """
        written: asyncio.Future[Written] = asyncio.get_running_loop().create_future()
        give_up_at = time.monotonic() + self._give_up_after
        self._waiting.append(_Entry(record, final_status, written, give_up_at))
        self._idle.clear()
        self._has_work.set()
        self._update_room()
        return await written

    async def wait_for_room(self) -> None:
        """Wait until writes go through and few enough attempts wait to be written."""
        if not self._room.is_set():  # checked first: an actor asks before every attempt
            await self._room.wait()

    def _update_room(self) -> None:
        if self._failing or self._stalled or len(self._waiting) >= self._max_unwritten:
            self._room.clear()
        else:
            self._room.set()

    async def wait_idle(self) -> None:
        """Wait until everything handed over so far has been written or given up."""
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
            await self._gather()
            batch = self._take()
            if not batch:
                self._update_idle()
                continue
            key = id(batch)
            self._in_progress[key] = (time.monotonic(), batch)
            # One timer per statement: a write still unanswered when it fires holds every
            # actor back at once, not at the watcher's next look.
            stall = asyncio.get_running_loop().call_later(self._stall_after, self._stalled_on, key)
            try:
                failed = await self._write(batch)
            finally:
                stall.cancel()
                del self._in_progress[key]
            self._failing = failed
            self._update_stalled()
            self._update_room()
            self._update_idle()
            if failed:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_delay_max)
            else:
                delay = 0.05

    def _stalled_on(self, key: int) -> None:
        if key in self._in_progress and not self._stalled:
            log.warning("attempt_writes_stalled", waited_s=self._stall_after)
            self._stalled = True
            self._update_room()

    def _update_stalled(self) -> None:
        now = time.monotonic()
        self._stalled = any(
            now - sent >= self._stall_after for sent, _ in self._in_progress.values()
        )

    async def _gather(self) -> None:
        """Let the attempts being made right now join this statement.

        A claimed batch reaches the actors at once, and with a fast vendor their attempts
        end a few loop turns apart (each vendor slot passes from actor to actor). Taken as
        soon as the first is there, they would go in several statements, one after the
        other, and the last of the batch would wait for all of them. So while each loop
        turn brings more, the writer waits one more turn: never for a slow vendor, whose
        attempts do not end within a turn of each other.
        """
        waiting = self._waiting
        seen = -1
        while seen != len(waiting) < self._max_batch:
            seen = len(waiting)
            await asyncio.sleep(0)

    async def watch(self) -> None:
        """Give up on attempts whose write comes too late to matter.

        A hung statement (packets dropped, not refused) ends only when its command times
        out; no actor may wait for it past the moment its lease lapses.
        """
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for _, batch in self._in_progress.values():
                for entry in batch:
                    if entry.give_up_at <= now:
                        self._give_up(entry, "no answer from the database")
            # Entries wait in the order they came: the oldest are at the left.
            for entry in self._waiting:
                if entry.give_up_at > now:
                    break
                self._give_up(entry, "not written in time")

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
            entry = waiting.popleft()
            if not entry.written.done():  # not given up meanwhile
                batch.append(entry)
        if not waiting:
            self._has_work.clear()
        self._update_room()
        return batch

    def _update_idle(self) -> None:
        if not self._waiting and not self._in_progress and not self._busy:
            self._idle.set()

    async def _write(self, batch: list[_Entry]) -> bool:
        """Write one batch; on an outage put back what is still worth retrying."""
        try:
            recorded = await self._store.record_attempts(
                self._owner, [(entry.record, entry.final_status) for entry in batch]
            )
        except DatabaseUnavailableError as exc:
            now = time.monotonic()
            retry = []
            for entry in batch:
                if entry.written.done():
                    continue
                if entry.give_up_at <= now:
                    self._give_up(entry, str(exc))
                else:
                    retry.append(entry)
            self._put_back(retry)
            return True
        except Exception as exc:
            # The database took the statement and refused it: a value it cannot hold (a
            # constraint, an encoding). One entry is at fault, not the batch: halve it
            # until that one is alone, and write everything else.
            if len(batch) > 1:
                middle = len(batch) // 2
                first = await self._write(batch[:middle])
                return await self._write(batch[middle:]) or first
            await self._refused(batch[0], exc)
            return False
        self._settle(batch, recorded)
        return False

    def _settle(self, batch: list[_Entry], recorded: Recorded) -> None:
        for entry in batch:
            if entry.written.done():
                continue  # given up while the statement was under way
            notification_id = entry.record.notification_id
            if notification_id in recorded.busy:
                self._defer(entry)
                continue
            owned = notification_id not in recorded.not_written
            if not owned:
                log.warning(
                    "lease_lost",
                    notification_id=entry.record.notification_id,
                    channel=entry.record.channel,
                    attempt=entry.record.attempt,
                )
                entry.written.set_result(Written.NO)
            elif notification_id in recorded.cancelled:
                entry.written.set_result(Written.CANCELLED)
            else:
                entry.written.set_result(Written.YES)

    def _defer(self, entry: _Entry) -> None:
        """Write `entry` again shortly: another transaction holds its row locked.

        Another application's open `SELECT ... FOR UPDATE` holds up this one attempt, not
        the batch; until the lock goes or the lease would lapse (then `watch` gives up).
        """
        if entry.give_up_at <= time.monotonic():
            self._give_up(entry, "its row stayed locked by another transaction")
            return
        if not entry.deferred:  # once: it is tried every BUSY_RETRY_DELAY until then
            entry.deferred = True
            log.info("attempt_write_deferred", notification_id=entry.record.notification_id)
        self._busy.append(entry)
        if self._busy_retry is None:
            loop = asyncio.get_running_loop()
            self._busy_retry = loop.call_later(BUSY_RETRY_DELAY, self._retry_busy)

    def _retry_busy(self) -> None:
        self._busy_retry = None
        busy, self._busy = self._busy, []
        self._put_back([entry for entry in busy if not entry.written.done()])
        self._update_room()
        self._update_idle()

    def _put_back(self, entries: list[_Entry]) -> None:
        """Queue `entries` to be written again, at the front: `watch` gives up the oldest
        first, and these came before anything that joined the queue meanwhile."""
        self._waiting.extendleft(reversed(entries))
        if entries:
            self._has_work.set()

    async def _refused(self, entry: _Entry, exc: Exception) -> None:
        """The database refused this attempt: write it without the vendor's answer.

        The answer is what another application's client can put anything into, and so is
        the error text, which quotes the vendor (Telegram's `description`): it is written
        with what PostgreSQL cannot hold replaced. The rest is notifyd's own. If even that
        is refused (a clock far off), the attempt is given up, with the error in the log.
        """
        log.error(
            "attempt_write_refused",
            notification_id=entry.record.notification_id,
            channel=entry.record.channel,
            error_type=type(exc).__name__,
            error=str(exc)[:500],
        )
        record = entry.record
        plain = AttemptRecord(
            notification_id=record.notification_id,
            channel=record.channel,
            attempt=record.attempt,
            status=record.status,
            error=with_unstorable_replaced((record.error or "")[:2000])
            + " (the vendor's answer could not be stored)",
            transient=record.transient,
            provider_response=None,
            started_at=record.started_at,
            finished_at=record.finished_at,
            round=record.round,
        )
        try:
            recorded = await self._store.record_attempts(self._owner, [(plain, entry.final_status)])
        except Exception as again:  # an outage now, or the same refusal
            self._give_up(entry, f"refused by the database: {type(again).__name__}")
            return
        self._settle([entry], recorded)

    @staticmethod
    def _give_up(entry: _Entry, reason: str) -> None:
        if entry.written.done():
            return
        log.error(
            "attempt_not_recorded",
            notification_id=entry.record.notification_id,
            channel=entry.record.channel,
            attempt=entry.record.attempt,
            error=reason,
        )
        entry.written.set_result(Written.NO)


def with_unstorable_replaced(text: str) -> str:
    """`text` with each character a text column cannot hold made U+FFFD."""
    return UNSTORABLE_TEXT.sub("\ufffd", text)
