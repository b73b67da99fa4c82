"""Typed rows the store hands out, and the values the pipeline passes along."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from notifyd.constants import DEFAULT_CHANNELS
from notifyd.providers.base import OutgoingMessage, Recipient


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str | None
    phone: str | None
    telegram_chat_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    user_id: int
    subject: str
    message: str
    channels: tuple[str, ...]
    status: str
    send_at: datetime | None
    priority: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class NotificationFilter:
    """Which notifications a listing shows; None means any."""

    status: str | None = None
    user_id: int | None = None
    # Notifications whose channel list includes this one.
    channel: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    # Keyset pagination: only ids below this one (the last of the previous page).
    before_id: int | None = None


@dataclass(frozen=True, slots=True)
class NewNotification:
    """A notification to enqueue."""

    user_id: int
    message: str
    subject: str = ""
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    send_at: datetime | None = None
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Attempt:
    id: int
    notification_id: int
    channel: str
    attempt: int
    status: str
    error: str | None
    transient: bool | None
    provider_response: Any
    started_at: datetime
    finished_at: datetime


@dataclass(frozen=True, slots=True)
class ClaimedNotification:
    """A notification this instance holds the lease on, with its user's contacts."""

    id: int
    recipient: Recipient
    subject: str
    message: str
    channels: tuple[str, ...]
    created_at: datetime
    # Above 1 when an earlier lease expired: delivery resumes from the attempt log.
    claims: int


# Not frozen: one is made per attempt, and a frozen dataclass takes several times as long
# to build.
@dataclass(slots=True)
class AttemptRecord:
    """One finished attempt, to be written to the attempt log."""

    notification_id: int
    channel: str
    attempt: int
    status: str
    error: str | None
    transient: bool | None
    provider_response: dict[str, Any] | None
    started_at: datetime
    finished_at: datetime


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
    def channel(self) -> str:
        return self.notification.channels[self.channel_index]

    def next_channel(self) -> str | None:
        """The channel after the current one, or None when the order is used up."""
        following = self.channel_index + 1
        if following < len(self.notification.channels):
            return self.notification.channels[following]
        return None


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """An Idempotency-Key with the fingerprint of the request it came with."""

    # Whose key: the caller's id ("" when the API is open).
    scope: str
    key: str
    fingerprint: bytes
    # Older keys are forgotten: the same key then starts over.
    keep_seconds: float


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """An HTTP answer kept with its idempotency key, to be given again to a replay."""

    status_code: int
    body: dict[str, Any]
