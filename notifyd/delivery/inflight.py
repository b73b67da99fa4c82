"""Everything this instance holds, and where each notification is: the one place for it.

A claimed notification becomes a `Delivery` here and stays until it is finished, dropped
(its lease is no longer ours) or handed back to the queue at shutdown. Where it is at any
moment is its `state`: in a channel's inbox, with an actor, waiting out a backoff, or
parked for release. Stopping is one walk over this one structure.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from notifyd.domain import Channel, ClaimedNotification, OutgoingMessage


class Where(enum.Enum):
    """Where a held notification is right now."""

    # Claimed; where its delivery resumes is still being read from the attempt log.
    RESUMING = enum.auto()
    # In its channel's inbox, waiting for an actor.
    QUEUED = enum.auto()
    # An actor has it: attempting, or waiting for its attempt to be written.
    ACTIVE = enum.auto()
    # Waiting out a backoff; a timer puts it back in the inbox.
    WAITING = enum.auto()
    # Stopping: to be handed back to the queue, claimable from `due`.
    PARKED = enum.auto()


@dataclass(slots=True, eq=False)
class Delivery:
    """Where one claimed notification stands in its channel order."""

    notification: ClaimedNotification
    channel_index: int = 0
    # Attempts already made on the current channel.
    attempts_on_channel: int = 0
    where: Where = Where.QUEUED
    # Monotonic time until which this instance's lease is known to hold: claimed or last
    # renewed that long ago. Past it (renewals failed: the database is away), another
    # instance may have taken the notification over.
    lease_until: float = float("inf")
    # While WAITING or PARKED: when it may be attempted (or claimed) again.
    due: datetime | None = None
    timer: asyncio.TimerHandle | None = None
    # A sending slot taken for its next attempt (monotonic time), on a paced channel.
    slot_at: float | None = None
    # When that slot was taken (monotonic): one taken before a pause may fall within it.
    slot_taken: float = 0.0
    # Since when the vendor has been throttling it on this channel (monotonic).
    throttled_since: float | None = None
    # Someone asked to cancel it: no further attempt starts.
    cancel_requested: bool = False
    # What every attempt sends, built once.
    message: OutgoingMessage = field(init=False)

    def __post_init__(self) -> None:
        notification = self.notification
        self.message = OutgoingMessage(
            notification_id=notification.id,
            recipient=notification.recipient,
            subject=notification.subject,
            body=notification.message,
        )

    @property
    def id(self) -> int:
        return self.notification.id

    @property
    def channel(self) -> Channel:
        return self.notification.channels[self.channel_index]

    def is_last_channel(self) -> bool:
        return self.channel_index + 1 >= len(self.notification.channels)


class Inbox:
    """A channel's deliveries waiting for an actor: the most urgent first, then the oldest.

    Ahead of all of them, those that hold a sending slot already: their slot has come, and
    one sent late would go out together with the slots after it, in a burst the vendor
    refuses. (Slots were taken in order of priority, so priority still decides.)

    Oldest by notification id, not by arrival here: deliveries that waited out a pause
    come back together, in whatever order their timers fire, and two messages to one chat
    must still go in the order they were sent.
    """

    def __init__(self) -> None:
        self._queue: asyncio.PriorityQueue[tuple[bool, int, int, int, Delivery]] = (
            asyncio.PriorityQueue()
        )
        self._order = itertools.count()

    def put_nowait(self, delivery: Delivery) -> None:
        self._queue.put_nowait(
            (
                delivery.slot_at is None,
                -delivery.notification.priority,
                delivery.id,
                next(self._order),
                delivery,
            )
        )

    async def get(self) -> Delivery:
        queue = self._queue
        if queue.empty():
            return (await queue.get())[4]
        return queue.get_nowait()[4]  # without a coroutine of the queue's: once per attempt

    def get_nowait(self) -> Delivery:
        return self._queue.get_nowait()[4]

    def qsize(self) -> int:
        return self._queue.qsize()

    def empty(self) -> bool:
        return self._queue.empty()


class InFlight:
    """The notifications this instance holds, bounded, and the inboxes they move through.

    The dispatcher never claims more than `free()`, so memory stays bounded whatever the
    backlog in the table. When a claim came back full (`backlog`), freeing a batch's worth
    of room calls `on_room` to claim again.
    """

    def __init__(
        self,
        capacity: int,
        refill_threshold: int,
        on_room: Callable[[], None],
        inboxes: Mapping[Channel, Inbox],
    ) -> None:
        self.capacity = capacity
        self._refill_threshold = max(1, min(refill_threshold, capacity))
        self._on_room = on_room
        self.inboxes = inboxes
        self._held: dict[int, Delivery] = {}
        # Deliveries not yet parked nor gone; stopping waits for none to be left.
        self._unsettled = 0
        self._settled = asyncio.Event()
        self._settled.set()
        self.draining = False
        # Set when the last claim came back full: more rows are probably waiting.
        self.backlog = False

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, notification_id: object) -> bool:
        return notification_id in self._held

    @property
    def refill_threshold(self) -> int:
        """Room that makes a claim worth its round trip while there is a backlog."""
        return self._refill_threshold

    def free(self) -> int:
        return self.capacity - len(self._held)

    def ids(self) -> list[int]:
        return list(self._held)

    # Coming in

    def hold(self, notification: ClaimedNotification, lease_until: float) -> Delivery:
        """Take in a just-claimed notification; `start` puts it on its way."""
        delivery = Delivery(notification, where=Where.RESUMING, lease_until=lease_until)
        self._held[notification.id] = delivery
        self._change_unsettled(+1)
        return delivery

    def start(self, delivery: Delivery, channel_index: int = 0, attempts: int = 0) -> None:
        """Deliver from channel `channel_index`, where `attempts` were made already."""
        delivery.channel_index = channel_index
        delivery.attempts_on_channel = attempts
        self._route(delivery)

    def leases_renewed(self, notification_ids: list[int], until: float) -> None:
        """The leases of these were renewed: each holds at least until `until` (monotonic)."""
        held = self._held
        for notification_id in notification_ids:
            delivery = held.get(notification_id)
            if delivery is not None and delivery.lease_until < until:
                delivery.lease_until = until

    def cancel_requested(self, notification_ids: list[int]) -> None:
        """A cancel was asked for these: none starts another attempt.

        One waiting out a backoff goes to its inbox at once, so that an actor ends it now
        rather than when the backoff would have.
        """
        held = self._held
        for notification_id in notification_ids:
            delivery = held.get(notification_id)
            if delivery is None or delivery.cancel_requested:
                continue
            delivery.cancel_requested = True
            if delivery.where is Where.WAITING:
                if delivery.timer is not None:
                    delivery.timer.cancel()
                    delivery.timer = None
                self._route(delivery)

    # Decisions an actor made

    def taken(self, delivery: Delivery) -> None:
        """An actor took it from the inbox."""
        delivery.where = Where.ACTIVE

    def retry_later(self, delivery: Delivery, delay: float) -> None:
        """Attempt the same channel again after `delay` s, without holding an actor."""
        delivery.attempts_on_channel += 1
        self.wait(delivery, delay)

    def wait(self, delivery: Delivery, delay: float) -> None:
        """Back in the inbox after `delay` s (a backoff, a sending slot), without an actor."""
        delivery.due = datetime.now(UTC) + timedelta(seconds=delay)
        if self.draining:
            self._park(delivery, delivery.due)
        elif delay <= 0:
            self._route(delivery)
        else:
            delivery.where = Where.WAITING
            delivery.timer = asyncio.get_running_loop().call_later(delay, self._wake, delivery)

    def fall_back(self, delivery: Delivery) -> None:
        """Go on with the next channel in the notification's order."""
        delivery.channel_index += 1
        delivery.attempts_on_channel = 0
        delivery.slot_at = None
        delivery.throttled_since = None
        if self.draining:
            self._park(delivery, datetime.now(UTC))
        else:
            self._route(delivery)

    def give_back(self, delivery: Delivery) -> None:
        """An actor took it while stopping, before attempting: it goes back to the queue."""
        self._park(delivery, datetime.now(UTC))

    def forget(self, delivery: Delivery) -> None:
        """It is finished, or no longer ours (its lease lapsed or was taken over)."""
        if self._held.get(delivery.id) is not delivery:
            return
        del self._held[delivery.id]
        if delivery.where is not Where.PARKED:
            self._change_unsettled(-1)
        if delivery.timer is not None:
            delivery.timer.cancel()
            delivery.timer = None
        if self.backlog and self.free() >= self._refill_threshold:
            self._on_room()

    # Stopping

    def drain(self) -> None:
        """Stop moving work: backoffs and inboxes are parked; actors park what they finish."""
        self.draining = True
        now = datetime.now(UTC)
        for delivery in self._held.values():
            if delivery.where is Where.WAITING:
                self._park(delivery, delivery.due or now)
            elif delivery.where in (Where.QUEUED, Where.RESUMING):
                self._park(delivery, now)
        for inbox in self.inboxes.values():
            while not inbox.empty():
                inbox.get_nowait()

    async def wait_settled(self) -> None:
        """Wait until nothing is with an actor or on its way to one."""
        await self._settled.wait()

    def unfinished(self) -> list[tuple[int, datetime]]:
        """Every notification still held, with the time it may be claimed again from."""
        now = datetime.now(UTC)
        result = []
        for notification_id, delivery in self._held.items():
            due = delivery.due if delivery.where is Where.PARKED else None
            result.append((notification_id, due or now))
        return result

    # Inside

    def _route(self, delivery: Delivery) -> None:
        if self.draining:
            self._park(delivery, datetime.now(UTC))
            return
        delivery.where = Where.QUEUED
        self.inboxes[delivery.channel].put_nowait(delivery)

    def _wake(self, delivery: Delivery) -> None:
        delivery.timer = None
        if delivery.where is Where.WAITING:
            self._route(delivery)

    def _park(self, delivery: Delivery, due: datetime) -> None:
        if delivery.timer is not None:
            delivery.timer.cancel()
            delivery.timer = None
        if delivery.where is not Where.PARKED:
            self._change_unsettled(-1)
        delivery.where = Where.PARKED
        delivery.due = due

    def _change_unsettled(self, by: int) -> None:
        self._unsettled += by
        if self._unsettled:
            self._settled.clear()
        else:
            self._settled.set()
