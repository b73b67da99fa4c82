"""Bounded in-flight work: how many claimed notifications this instance holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from notifyd.domain import Channel, ClaimedNotification, OutgoingMessage


class InFlight:
    """Counts the notifications held in memory and asks for more when room frees up.

    The dispatcher never claims more than `free()`, so memory stays bounded whatever the
    backlog in the table.
    """

    def __init__(self, capacity: int, refill_threshold: int, on_room: Callable[[], None]) -> None:
        self.capacity = capacity
        self._refill_threshold = max(1, min(refill_threshold, capacity))
        self._on_room = on_room
        self._ids: set[int] = set()
        self._empty = asyncio.Event()
        self._empty.set()
        # Set when the last claim came back full: more rows are probably waiting.
        self.backlog = False

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, notification_id: object) -> bool:
        return notification_id in self._ids

    def ids(self) -> list[int]:
        return list(self._ids)

    @property
    def refill_threshold(self) -> int:
        """Room that makes a claim worth its round trip while there is a backlog."""
        return self._refill_threshold

    def free(self) -> int:
        return self.capacity - len(self._ids)

    def add(self, notification_id: int) -> None:
        self._ids.add(notification_id)
        self._empty.clear()

    def done(self, notification_id: int) -> None:
        self._ids.discard(notification_id)
        if not self._ids:
            self._empty.set()
        if self.backlog and self.free() >= self._refill_threshold:
            self._on_room()

    async def wait_empty(self) -> None:
        await self._empty.wait()


@dataclass(slots=True)
class Delivery:
    """Where one claimed notification stands in its channel order."""

    notification: ClaimedNotification
    channel_index: int = 0
    # Attempts already made on the current channel.
    attempts_on_channel: int = 0
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
    def channel(self) -> Channel:
        return self.notification.channels[self.channel_index]

    def next_channel(self) -> Channel | None:
        """The channel after the current one, or None when the order is used up."""
        following = self.channel_index + 1
        if following < len(self.notification.channels):
            return self.notification.channels[following]
        return None
