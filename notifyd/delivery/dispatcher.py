"""The dispatcher: claims pending notifications and hands each to its first channel."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from uuid import UUID

from notifyd.delivery.inflight import Delivery, InFlight
from notifyd.delivery.retry import resume_point
from notifyd.delivery.store import DeliveryStore
from notifyd.delivery.timers import wait_for_event
from notifyd.domain import Attempt, ClaimedNotification, Status
from notifyd.errors import DatabaseUnavailableError
from notifyd.logs import get_logger

log = get_logger(__name__)


class Dispatcher:
    """Claims in batches whenever woken (NOTIFY, a freed slot) or every `poll_interval`.

    NOTIFY only wakes it: the table is the truth, and the poll catches whatever a lost
    notification would have missed. It claims only while `may_claim()`: the instance holds
    its presence lock, since other instances take over leases held without one; or it runs
    poll-only, where its lease heartbeats alone keep others off its work.

    Claims run in up to `claimers` lanes at once (SKIP LOCKED keeps them apart). A wake
    while a claim is under way opens another lane rather than waiting for it: a row that
    committed just after a claim's snapshot would otherwise wait for that claim to end and
    then for its own, the tail of the time from insert to delivery. A wake while every lane
    is busy is kept, and the first lane to find the table dry claims once more for it: each
    wake is followed by a claim that started after it.
    """

    def __init__(
        self,
        store: DeliveryStore,
        owner: UUID,
        in_flight: InFlight,
        *,
        may_claim: Callable[[], bool],
        poll_interval: float,
        batch_size: int,
        claimers: int,
        lease_seconds: float,
        max_attempts: int,
    ) -> None:
        self._store = store
        self._owner = owner
        self._in_flight = in_flight
        self._may_claim = may_claim
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._claimers = claimers
        # Room promised to claims still running.
        self._reserved = 0
        self._lanes: set[asyncio.Task[None]] = set()
        # A wake came after the last claim started: one more claim is owed.
        self._owed = False
        # `wake()` was called since the run loop last looked (not only `room()`).
        self._rows_may_wait = False
        self._lease_seconds = lease_seconds
        self._max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._stopping = False
        self._failing_since: float | None = None
        # Set once a claim has been made: the instance has started to work.
        self.started = asyncio.Event()

    def wake(self) -> None:
        """Rows may be due (a NOTIFY, a requeue): a claim that starts after now is owed."""
        self._rows_may_wait = True
        self._wake.set()

    def room(self) -> None:
        """In-flight has a batch's worth of room again behind a backlog.

        Not a wake for rows: a lane under way claims for it if it still finds a backlog, and
        a new lane does only if the room left beside the claims under way is worth a claim.
        """
        self._wake.set()

    def stop_claiming(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Open a claim lane at each wake or poll until told to stop; claims under way end."""
        with _one_lanes_bug_as_itself():
            async with asyncio.TaskGroup() as lanes:  # a lane that fails cancels the others
                while not self._stopping:
                    woken = await wait_for_event(self._wake, self._poll_interval)
                    self._wake.clear()
                    for_rows = self._rows_may_wait or not woken  # a poll is for rows too
                    self._rows_may_wait = False
                    if not self._stopping:
                        self._open_lane(lanes, backlog=not for_rows)

    async def claim_available(self) -> None:
        """For tests: claim until the table has nothing ready or there is no room.

        What `run()` does for a wake for rows (`wake()`), on a dispatcher whose `run()` is
        not running.
        """
        with _one_lanes_bug_as_itself():
            async with asyncio.TaskGroup() as lanes:
                self._open_lane(lanes)

    def _open_lane(self, lanes: asyncio.TaskGroup, *, backlog: bool = False) -> None:
        """A lane for a wake, or (`backlog`) for room behind a claim that came back full."""
        if not self._may_claim():
            return
        if not backlog:
            self._owed = True
        if len(self._lanes) >= self._claimers:
            return  # a lane under way claims again before it ends
        if backlog and self._not_worth_a_claim(self._room_left()):
            # The lane would end at once. In a drain, in-flight calls for room at every
            # delivery that ends once a batch's worth is free: no task for each.
            return
        self._lanes.add(lanes.create_task(self._claim_lane(lanes, backlog=backlog)))

    def _room_left(self) -> int:
        """Rows a claim may take now: beside what is held and what claims under way hold."""
        return min(self._batch_size, self._in_flight.free() - self._reserved)

    def _not_worth_a_claim(self, limit: int) -> bool:
        """Behind a full claim (a backlog): too little room for a claim of its own.

        A claim for the few slots freed since costs the database nearly what a full one
        does; in-flight calls for room again once a batch's worth is free. A wake owed is
        claimed for all the same: in-flight would not call again for it.
        """
        return not self._owed and limit < self._in_flight.refill_threshold

    async def _claim_lane(self, lanes: asyncio.TaskGroup, *, backlog: bool) -> None:
        """Claim batch after batch while claims come back full, or a claim is owed.

        Ends when the table runs dry, room runs out, or a claim fails. A full batch opens
        another lane in `lanes`, up to `claimers`.
        """
        first = not backlog
        try:
            while not self._stopping and (self._owed or not first):
                limit = self._room_left()
                if limit <= 0:
                    # What woke us waits for room; in-flight wakes the dispatcher once a
                    # batch's worth is free.
                    self._in_flight.backlog = True
                    return
                if not first and self._not_worth_a_claim(limit):
                    return
                first = False
                # This claim sees everything committed before it starts: the wakes so far.
                self._owed = False
                lease_until = time.monotonic() + self._lease_seconds
                claimed = await self._claim(limit)
                if claimed is None:
                    if self._owed:
                        # A wake came during the failed claim: one more try for it now,
                        # not at the next poll. Without more wakes, no more tries.
                        self._wake.set()
                    return
                full = len(claimed) == limit
                if full and len(self._lanes) < self._claimers:
                    self._open_lane(lanes, backlog=True)
                # The last claim to end says whether the table had more than it took.
                self._in_flight.backlog = full
                # A notification still held here whose lease lapsed (an outage) and that
                # came back: the delivery in memory goes on; a second would send it twice.
                claimed = [n for n in claimed if n.id not in self._in_flight]
                await self._admit([self._in_flight.hold(n, lease_until) for n in claimed])
                if not full:
                    first = True  # dry: only a wake since this claim began claims again
        finally:
            # Here, not in a done callback: that runs a loop turn later, and a wake in
            # between would find every lane busy and be left to the next poll.
            self._lanes.discard(asyncio.current_task())

    async def _claim(self, limit: int) -> list[ClaimedNotification] | None:
        """Up to `limit` notifications leased to this instance; None if the claim failed."""
        self._reserved += limit
        started = time.perf_counter()
        try:
            claimed = await self._store.claim(limit, self._owner, self._lease_seconds)
        except DatabaseUnavailableError as exc:
            # Once per outage, not once per poll.
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.warning("claim_failed", error=str(exc))
            return None
        except Exception as exc:
            # The claim itself failed (a row it could not read, a bug): the daemon stays
            # up for everything else and tries again at the next poll, loudly.
            log.error(
                "claim_crashed", error_type=type(exc).__name__, error=str(exc)[:500], exc_info=exc
            )
            return None
        finally:
            self._reserved -= limit
            # Started once a claim has been tried: under steady wakes a lane never ends.
            self.started.set()
        if self._failing_since is not None:
            log.info("claim_recovered", outage_s=round(time.monotonic() - self._failing_since, 3))
            self._failing_since = None
        if claimed:
            log.debug(
                "claimed",
                count=len(claimed),
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
        return claimed

    async def _admit(self, deliveries: list[Delivery]) -> None:
        in_flight = self._in_flight
        resumed = [d for d in deliveries if d.notification.claims > 1]
        history: dict[int, list[Attempt]] = {}
        if resumed:
            try:
                history = await self._store.attempts([d.id for d in resumed])
            except DatabaseUnavailableError as exc:
                # Without the log we cannot tell where to resume: let the lease lapse.
                log.warning("resume_failed", error=str(exc), count=len(resumed))
                for delivery in resumed:
                    in_flight.forget(delivery)
                return await self._admit([d for d in deliveries if d.notification.claims == 1])
        for delivery in deliveries:
            if delivery.notification.claims == 1:
                in_flight.start(delivery)
            else:
                await self._resume(delivery, history.get(delivery.id, []))
        return None

    async def _resume(self, delivery: Delivery, attempts: list[Attempt]) -> None:
        notification = delivery.notification
        # Earlier rounds (before a retry) are history: this round starts over.
        attempts = [a for a in attempts if a.round == notification.round]
        point = resume_point(notification.channels, attempts, self._max_attempts)
        log.info(
            "delivery_resumed",
            notification_id=notification.id,
            attempts_logged=len(attempts),
            channel_index=point.channel_index,
        )
        if point.channel_index is not None:
            if point.throttled_since is not None:
                # The wait counts from the first "slow down", whoever heard it.
                waited = (datetime.now(UTC) - point.throttled_since).total_seconds()
                delivery.throttled_since = time.monotonic() - max(0.0, waited)
            self._in_flight.start(delivery, point.channel_index, point.attempts_on_channel)
            return
        status = Status.SENT if point.already_sent else Status.FAILED
        try:
            await self._store.finish_without_attempt(notification.id, self._owner, status)
        except DatabaseUnavailableError as exc:
            log.warning("finish_failed", notification_id=notification.id, error=str(exc))
        self._in_flight.forget(delivery)


@contextlib.contextmanager
def _one_lanes_bug_as_itself() -> Iterator[None]:
    """A lane's bug raised as itself, so the supervisor's log names it."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
